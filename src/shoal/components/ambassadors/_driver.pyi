"""Type stubs of the compiled driver: ``driver.py`` compiled a second time (see ``native``)."""

from shoal.components.ambassadors.driver import Ambassador as Ambassador

__all__ = ["Ambassador"]
