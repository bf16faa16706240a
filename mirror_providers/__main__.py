"""``python -m mirror_providers``: the command line (see ``mirror_providers.cli``)."""

from .cli import main_exit

if __name__ == "__main__":
    main_exit()
