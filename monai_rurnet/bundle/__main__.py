"""``python -m monai_rurnet.bundle BUNDLE_DIR [...] [--schema FILE] [--no-net]``: check bundles offline;
``python -m monai_rurnet.bundle options BUNDLE_DIR [...]``: list their inference options."""

import sys

from monai_rurnet.bundle import options, verify

if __name__ == "__main__":
    if sys.argv[1:2] == ["options"]:
        raise SystemExit(options.main(sys.argv[2:]))
    raise SystemExit(verify.main())
