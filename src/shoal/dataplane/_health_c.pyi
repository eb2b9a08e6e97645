# The compiled build of health.py (same source): its state machines.
from shoal.dataplane.health import ActiveHealth as ActiveHealth
from shoal.dataplane.health import OutlierDetector as OutlierDetector
from shoal.dataplane.health import PendingLimiter as PendingLimiter
from shoal.dataplane.health import RetryBudget as RetryBudget
