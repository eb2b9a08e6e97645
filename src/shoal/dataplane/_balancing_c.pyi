# The compiled build of balancing.py (same source): its pickers.
from shoal.dataplane.balancing import HashPicker as HashPicker
from shoal.dataplane.balancing import LeastRequest as LeastRequest
from shoal.dataplane.balancing import RandomPicker as RandomPicker
from shoal.dataplane.balancing import SmoothWeightedRoundRobin as SmoothWeightedRoundRobin
from shoal.dataplane.balancing import make_picker as make_picker
