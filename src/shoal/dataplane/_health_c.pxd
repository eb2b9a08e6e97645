# The compiled health machines' C layout (health.py's per-request classes, built as
# shoal.dataplane._health_c): their fields, and the methods the compiled dispatcher calls once
# per request, as C calls (``_dispatch_c`` cimports these types). health.py keeps the same
# fields as plain annotations, for the pure build and for type checkers.

cdef class _Watched:
    cdef public long failures
    cdef public long connect_errors
    cdef public long times
    cdef public object ejected_until
    cdef public double calm_since


cdef class OutlierDetector:
    cdef public object _settings
    cdef public dict _endpoints
    cdef public long _out
    cpdef record(self, address, outcome, now)


cdef class RetryBudget:
    cdef public object _settings
    cdef public long _active
    cdef public long _retrying
    cpdef request_started(self)
    cpdef request_finished(self)


cdef class _Slots:
    cdef public long in_flight
    cdef public object queue


cdef class PendingLimiter:
    cdef public object _settings
    cdef public long _max_in_flight
    cdef public dict _endpoints
    cpdef admit(self, address, ticket)
    cpdef finish(self, address)
