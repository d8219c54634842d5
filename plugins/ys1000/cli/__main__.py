import sys

from ys1000.cli import main

sys.exit(main())
