"""`python -m zoo`: the `zoo` command (how torchrun starts zoo in each process)."""

from zoo.cli import main

if __name__ == "__main__":
    main()
