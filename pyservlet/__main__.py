import sys

from pyservlet.cli import main

sys.exit(main())
