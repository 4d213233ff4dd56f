"""``python -m monai_rurnet.bundle BUNDLE_DIR [...] [--schema FILE] [--no-net]``: check bundles offline."""

from monai_rurnet.bundle.verify import main

if __name__ == "__main__":
    raise SystemExit(main())
