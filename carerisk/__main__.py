"""`python -m carerisk` runs the command line."""

from carerisk.cli import main

if __name__ == "__main__":
    main()
