import sys

from parapipe.cli import main

sys.exit(main())
