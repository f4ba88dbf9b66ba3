"""PyInstaller entry point of ssmdiag.exe (windows/build.ps1): the same as `python -m ssmdiag`.

`ssmdiag.exe service` is what the service control manager runs (see windows/ssmdiag.wxs);
every other command works from a console as on Linux.
"""

import sys

from ssmdiag.cli import main

if __name__ == "__main__":
    sys.exit(main())
