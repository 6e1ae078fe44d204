import sys

from pylab.cli import main

sys.exit(main())
