# The compiled scanners as C functions, for the compiled event loop (``_loop_c`` cimports them):
# no Python call and no attribute lookups per request.
cdef object scan_request_within(
    bytes data, Py_ssize_t max_head_size, Py_ssize_t max_headers, long long max_body
)
cdef object scan_response_c(bytes data, bint keep_alive)
