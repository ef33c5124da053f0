"""prodcat: label noisy receipt lines with a supergroup → group → module → brand path."""

__version__ = "0.1.0"

LEVELS: tuple[str, ...] = ("supergroup", "group", "module", "brand")
