"""Data I/O, datalists, synthetic generators and transform chains for the Recurrent U-Net bundles."""

from __future__ import annotations

from monai_rurnet.data.geotiff import (
    MASSROADS_CRS,
    RasterioReader,
    affine_to_geotransform,
    create_like,
    geotransform_to_affine,
    iter_windows,
    massroads_geotransform,
    read_window,
    write_georeferenced_tile,
    write_geotiff,
)
from monai_rurnet.data.guidance_io import GuidanceFiles, GuidanceRasters, read_prior, read_strokes
from monai_rurnet.data.hands import (
    HAND_DATASETS,
    egohands_datalist,
    eyth_datalist,
    gtea_datalist,
    hand_dataset_datalist,
    hand_folder_datalist,
    hof_datalist,
    kbh_datalist,
    make_synthetic_hands,
)
from monai_rurnet.data.retina import (
    chase_datalist,
    drive_datalist,
    fov_diameter,
    fov_mask_from_image,
    stare_datalist,
)
from monai_rurnet.data.roads import MarkVoidd, massroads_datalist, void_mask
from monai_rurnet.data.synthetic import synthetic_hand_image, synthetic_roads, synthetic_vessel_image
from monai_rurnet.data.transforms import (
    Binarized,
    EncodeIgnored,
    MatchSizeToImaged,
    TwoClassCoveraged,
    hands_infer_transforms,
    hands_train_transforms,
    load_transforms,
    roads_eval_transforms,
    roads_train_transforms,
)

__all__ = [
    "HAND_DATASETS",
    "MASSROADS_CRS",
    "Binarized",
    "EncodeIgnored",
    "GuidanceFiles",
    "GuidanceRasters",
    "MarkVoidd",
    "MatchSizeToImaged",
    "TwoClassCoveraged",
    "RasterioReader",
    "affine_to_geotransform",
    "chase_datalist",
    "create_like",
    "drive_datalist",
    "fov_diameter",
    "fov_mask_from_image",
    "egohands_datalist",
    "eyth_datalist",
    "geotransform_to_affine",
    "gtea_datalist",
    "hand_dataset_datalist",
    "hand_folder_datalist",
    "hands_infer_transforms",
    "hands_train_transforms",
    "hof_datalist",
    "iter_windows",
    "kbh_datalist",
    "load_transforms",
    "make_synthetic_hands",
    "massroads_datalist",
    "massroads_geotransform",
    "read_prior",
    "read_strokes",
    "read_window",
    "roads_eval_transforms",
    "roads_train_transforms",
    "stare_datalist",
    "synthetic_hand_image",
    "synthetic_roads",
    "synthetic_vessel_image",
    "void_mask",
    "write_georeferenced_tile",
    "write_geotiff",
]
