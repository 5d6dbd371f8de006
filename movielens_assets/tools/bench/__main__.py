"""``python -m movielens_assets.tools.bench <phase> <spec-json> <out-json>``: run one phase."""

import sys

from movielens_assets.tools.bench.phases import main

sys.exit(main())
