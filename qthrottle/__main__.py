import sys

from qthrottle.cli import main

sys.exit(main())
