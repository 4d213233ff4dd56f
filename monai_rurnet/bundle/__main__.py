"""``python -m monai_rurnet.bundle BUNDLE_DIR [...] [--schema FILE] [--no-net]``: check bundles offline;
``python -m monai_rurnet.bundle options BUNDLE_DIR [...]``: list their inference options;
``python -m monai_rurnet.bundle export BUNDLE_DIR OUT_DIR``: write a self-contained copy of a bundle."""

import sys

if __name__ == "__main__":
    if sys.argv[1:2] == ["options"]:
        from monai_rurnet.bundle.options import main as options_main

        raise SystemExit(options_main(sys.argv[2:]))
    if sys.argv[1:2] == ["export"]:
        from monai_rurnet.bundle.export import main as export_main

        raise SystemExit(export_main(sys.argv[2:]))
    from monai_rurnet.bundle.verify import main

    raise SystemExit(main())
