"""Words shared by what finance and customers read: invoice line descriptions and mail."""


def units_text(units: int) -> str:
    """``1 unit``, ``0 units``, ``12 units``: invoice lines are read aloud in customer disputes."""
    return f"{units} unit" if abs(units) == 1 else f"{units} units"
