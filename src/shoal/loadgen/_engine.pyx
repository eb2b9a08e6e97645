# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The generator's engine compiled: the policy of :mod:`shoal.loadgen.engine` in C, and its I/O
as an ``epoll`` loop that runs with the GIL released.

Theory of operation
-------------------
:class:`NativeEngine` keeps the Python engine's rules line for line (see that module: the open
model, connect-first, the backlog and ``drop_after``, one request per connection, late and
timed-out requests, latency from the intended start), with its state in C arrays instead of
objects. It runs in one of two modes:

* **callbacks** (``open_connection`` given): exactly the Python engine's interface, ``pump(now)``,
  ``connected``, ``response``, ``lost``... with connections the caller opens (the fake-clock
  simulation of the tests drives both engines through it, so the same behavioural tests cover
  both); a slot is an ``int`` handle;
* **native** (no ``open_connection``): :meth:`run_slice` runs the loop in C until an instant: a
  ``timerfd`` on CLOCK_MONOTONIC (``time.monotonic``'s clock) wakes it when ``pump`` asked (no
  sooner than the timer slack, as the Python driver's ticker), non-blocking sockets connect,
  each request is one ``send`` of bytes rendered once per path, and each readable socket is one
  ``read`` parsed in place by an HTTP/1.1 response parser written here (status line,
  ``Content-Length``, chunked bodies with trailers, ``Connection``, HEAD/1xx/204/304, bodies to
  the close). The driver runs slices in a thread and, between them, reads snapshots (progress)
  and checks ``stop``; :meth:`interrupt` (an ``eventfd``) ends a slice at once.

Latencies go into per-window, per-path cells with the bucket layout of
:mod:`shoal.loadgen.histogram`; :attr:`stats` builds the same :class:`RunStats` the Python
recorder does.
"""

from libc.stdint cimport int64_t, uint64_t, uint32_t
from libc.stdlib cimport malloc, calloc, realloc, free
from libc.string cimport memchr, memcpy, memmove, memset

cdef extern from "<string.h>" nogil:
    void* memmem(const void* haystack, size_t n, const void* needle, size_t m)
from libc.math cimport sqrt, pow
from libc.errno cimport errno, EAGAIN, EINTR, EINPROGRESS

cdef extern from "<errno.h>" nogil:
    int EWOULDBLOCK

import socket as _socket

from shoal.loadgen.histogram import Histogram
from shoal.loadgen.stats import RunStats, Window

cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    struct timespec:
        time_t tv_sec
        long tv_nsec
    int clock_gettime(int clk, timespec* tp)
    int CLOCK_MONOTONIC, CLOCK_REALTIME

cdef extern from "<unistd.h>" nogil:
    ssize_t read(int fd, void* buf, size_t count)
    ssize_t write(int fd, const void* buf, size_t count)
    int close(int fd)

cdef extern from "<sys/epoll.h>" nogil:
    union epoll_data_t:
        void* ptr
        int fd
        uint32_t u32
        uint64_t u64
    struct epoll_event:
        uint32_t events
        epoll_data_t data
    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event* event)
    int epoll_wait(int epfd, epoll_event* events, int maxevents, int timeout)
    int EPOLL_CLOEXEC
    int EPOLL_CTL_ADD, EPOLL_CTL_MOD, EPOLL_CTL_DEL
    uint32_t EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP, EPOLLRDHUP, EPOLLET

cdef extern from "<sys/timerfd.h>" nogil:
    struct itimerspec:
        timespec it_interval
        timespec it_value
    int timerfd_create(int clockid, int flags)
    int timerfd_settime(int fd, int flags, const itimerspec* new_value, itimerspec* old_value)
    int TFD_NONBLOCK, TFD_CLOEXEC, TFD_TIMER_ABSTIME

cdef extern from "<sys/eventfd.h>" nogil:
    int eventfd(unsigned int initval, int flags)
    int EFD_NONBLOCK, EFD_CLOEXEC

cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    struct sockaddr:
        pass
    int socket(int domain, int type, int protocol)
    int connect(int fd, const sockaddr* addr, socklen_t len)
    int setsockopt(int fd, int level, int name, const void* val, socklen_t len)
    int getsockopt(int fd, int level, int name, void* val, socklen_t* len)
    ssize_t send(int fd, const void* buf, size_t n, int flags)
    struct iovec:
        void* iov_base
        size_t iov_len
    struct msghdr:
        void* msg_name
        socklen_t msg_namelen
        iovec* msg_iov
        size_t msg_iovlen
        void* msg_control
        size_t msg_controllen
        int msg_flags
    struct cmsghdr:
        size_t cmsg_len
        int cmsg_level
        int cmsg_type
    cmsghdr* CMSG_FIRSTHDR(msghdr* msg)
    cmsghdr* CMSG_NXTHDR(msghdr* msg, cmsghdr* cmsg)
    unsigned char* CMSG_DATA(cmsghdr* cmsg)
    ssize_t recvmsg(int fd, msghdr* msg, int flags)
    int SOCK_STREAM, SOCK_NONBLOCK, SOCK_CLOEXEC, SOL_SOCKET, SO_ERROR, MSG_NOSIGNAL
    int SO_TIMESTAMPNS, SCM_TIMESTAMPNS
    int AF_INET, AF_INET6

cdef extern from "<netinet/in.h>" nogil:
    int IPPROTO_TCP

cdef extern from "<netinet/tcp.h>" nogil:
    int TCP_NODELAY

cdef extern from *:
    int __builtin_clzll(unsigned long long x) nogil

cdef double NEVER = 1e300
cdef uint64_t TAG_TIMER = <uint64_t>0xFFFFFFFFFFFFFFFF
cdef uint64_t TAG_WAKE = <uint64_t>0xFFFFFFFFFFFFFFFE
cdef uint64_t TAG_SOCKETS = <uint64_t>0xFFFFFFFFFFFFFFFD
cdef double DEFER = 0.001
"""When the timer fires within this many seconds, the loop waits for it alone and then reads
every socket that is ready (one wake-up for a burst of responses instead of one for each: on
a shared machine a wake-up costs more than a request). Each response keeps the time it
arrived (the kernel's receive timestamp), so the latency does not include the wait; only the
reuse of its connection waits, and at the rates where this applies (a wake-up due within
1 ms) an idle connection is nearly always there; while requests wait in the backlog for a
connection, responses wake the loop at once instead."""

cdef enum:
    MAX_INDEX = 256 + 40 * 128 - 1
    MAX_HEAD = 65536
    READ_SIZE = 65536
    INDEX_BITS = 24
    INDEX_MASK = (1 << 24) - 1
    # slot states (the Python engine's strings)
    S_FREE = 0
    S_CONNECTING = 1
    S_IDLE = 2
    S_BUSY = 3
    S_CLOSED = 4
    # failure kinds, in the order of FAILURE_NAMES
    F_CONNECT = 0
    F_TIMEOUT = 1
    F_RESET = 2
    F_PROTOCOL = 3
    # parser states (those of http.PureParser)
    P_HEAD = 0
    P_LENGTH = 1
    P_CHUNK_SIZE = 2
    P_CHUNK_DATA = 3
    P_CHUNK_CRLF = 4
    P_TRAILERS = 5
    P_UNTIL_CLOSE = 6
    # what run_slice returns
    R_SLICE = 0
    R_DONE = 1
    R_INTERRUPTED = 2

FAILURE_NAMES = ("connect", "timeout", "reset", "protocol")

SLICE = R_SLICE
"""The slice's end instant came."""
DONE = R_DONE
"""The run is over (finished or stopped)."""
INTERRUPTED = R_INTERRUPTED
"""``interrupt()`` was called."""


cdef struct Conn:
    int fd
    int state
    int path
    double intended
    double sent
    double opened
    uint64_t serial
    int pstate
    int64_t remaining
    int status
    int keep
    int head_only
    char* pend
    Py_ssize_t pend_len
    Py_ssize_t pend_cap
    Py_ssize_t wpos
    int wpending


cdef struct Cell:
    int64_t* counts
    Py_ssize_t size
    int64_t count
    int64_t total
    int64_t min
    int64_t max


cdef struct Entry:
    double intended
    int path


cdef inline double _monotonic() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <double>ts.tv_sec + <double>ts.tv_nsec * 1e-9


cdef inline int _lower(int c) noexcept nogil:
    if c >= 65 and c <= 90:
        return c + 32
    return c


cdef inline int _space(int c) noexcept nogil:
    # bytes.strip()'s ASCII whitespace
    return c == 32 or c == 9 or c == 10 or c == 13 or c == 11 or c == 12


cdef inline int _ieq(const char* p, Py_ssize_t n, const char* word, Py_ssize_t m) noexcept nogil:
    cdef Py_ssize_t i
    if n != m:
        return 0
    for i in range(n):
        if _lower(<unsigned char>p[i]) != <unsigned char>word[i]:
            return 0
    return 1


cdef inline Py_ssize_t _find_crlf(const char* p, Py_ssize_t start, Py_ssize_t end) noexcept nogil:
    cdef const char* found
    while start + 1 < end:
        found = <const char*>memchr(p + start, 13, end - start - 1)
        if found == NULL:
            return -1
        if found[1] == 10:
            return found - p
        start = found - p + 1
    return -1


cdef inline Py_ssize_t _find_head_end(const char* p, Py_ssize_t start, Py_ssize_t end) noexcept nogil:
    cdef const char* found
    if end - start < 4:
        return -1
    found = <const char*>memmem(p + start, end - start, b"\r\n\r\n", 4)
    return -1 if found == NULL else found - p


cdef class NativeEngine:
    """Scheduling, pooling, dropping and accounting for one worker's share of a plan, in C (the
    interface of :class:`shoal.loadgen.engine.Engine`; see the module docstring)."""

    cdef readonly object plan
    cdef readonly object settings
    cdef object _open_cb
    cdef list _conns
    cdef list _data_objs
    cdef public double cpu

    # plan
    cdef int npaths
    cdef const char** data
    cdef Py_ssize_t* data_len
    cdef int* head
    cdef int* cycle
    cdef Py_ssize_t ncycle
    cdef int nseg
    cdef double* seg_duration
    cdef double* seg_r0
    cdef double* seg_r1
    cdef double* seg_start
    cdef double* seg_offset
    cdef int cursor
    cdef double rate
    cdef int64_t total
    cdef int64_t step
    cdef int64_t k
    cdef int workers

    # settings
    cdef int connections
    cdef double timeout
    cdef double drop_after
    cdef double late_after
    cdef double timer_slack
    cdef double window

    # state
    cdef readonly double start
    cdef double next_time
    cdef double next_timeout_check
    cdef Conn* conns
    cdef int capacity
    cdef int* free_list
    cdef int nfree
    cdef int* idle_stack
    cdef int nidle
    cdef readonly int open
    cdef readonly int inflight
    cdef readonly int connecting
    cdef Entry* backlog
    cdef Py_ssize_t bl_head
    cdef Py_ssize_t bl_len
    cdef Py_ssize_t bl_cap
    cdef readonly bint stopped
    cdef uint64_t serial
    cdef bint native

    # recorder
    cdef Cell* cells
    cdef int64_t* failed_w
    cdef int64_t* errors_w
    cdef int64_t* dropped_w
    cdef int64_t* completed_w
    cdef Py_ssize_t nwin
    cdef Py_ssize_t capwin
    cdef int64_t* failed_p
    cdef int64_t* errors_p
    cdef int64_t statuses[1000]
    cdef int64_t failures[4]
    cdef int64_t r_errors
    cdef int64_t r_dropped
    cdef int64_t r_late
    cdef int64_t r_sent
    cdef int64_t r_scheduled
    cdef double r_end
    cdef bint has_end
    cdef bint r_stopped

    # native I/O
    cdef int epfd
    """The sockets' epoll set (harvested without waiting)."""
    cdef int ep_main
    """What the loop waits on when the timer is far: the timer, the interrupt, and ``epfd``."""
    cdef int ep_timer
    """What it waits on when the timer is near (within DEFER): the timer and the interrupt."""
    cdef double timer_at
    cdef int64_t real_offset
    """CLOCK_REALTIME - CLOCK_MONOTONIC in nanoseconds (receive timestamps are real time)."""
    cdef char control[128]
    cdef int timerfd
    cdef int wakefd
    cdef int family
    cdef char addr[28]
    cdef socklen_t addrlen
    cdef char* rbuf
    cdef int* pending
    cdef int npending
    cdef epoll_event* events
    cdef bint running

    def __cinit__(self):
        self.epfd = self.timerfd = self.wakefd = self.ep_main = self.ep_timer = -1
        self.timer_at = NEVER

    def __init__(
        self, plan, *, double start, open_connection=None, int worker=0, int workers=1,
        address=None,
    ):
        cdef Py_ssize_t i
        self.plan = plan
        self.settings = settings = plan.settings
        self._open_cb = open_connection
        self.native = open_connection is None
        self.start = start
        self.cpu = 0.0
        self.connections = settings.connections
        self.timeout = settings.timeout
        self.drop_after = settings.drop_after
        self.late_after = settings.late_after
        self.timer_slack = settings.timer_slack
        self.window = settings.window
        authority = plan.target.authority
        self._data_objs = [request.encode(authority) for request in plan.requests]
        self.npaths = len(plan.requests)
        self.data = <const char**>calloc(self.npaths, sizeof(char*))
        self.data_len = <Py_ssize_t*>calloc(self.npaths, sizeof(Py_ssize_t))
        self.head = <int*>calloc(self.npaths, sizeof(int))
        self.failed_p = <int64_t*>calloc(self.npaths, sizeof(int64_t))
        self.errors_p = <int64_t*>calloc(self.npaths, sizeof(int64_t))
        for i in range(self.npaths):
            blob = self._data_objs[i]
            self.data[i] = <const char*>(<bytes>blob)
            self.data_len[i] = len(blob)
            self.head[i] = plan.requests[i].method == "HEAD"
        cycle = plan.picker().cycle
        self.ncycle = len(cycle)
        self.cycle = <int*>calloc(self.ncycle, sizeof(int))
        for i in range(self.ncycle):
            self.cycle[i] = cycle[i]
        schedule = plan.schedule
        segments = schedule.segments
        self.nseg = len(segments)
        self.seg_duration = <double*>calloc(self.nseg, sizeof(double))
        self.seg_r0 = <double*>calloc(self.nseg, sizeof(double))
        self.seg_r1 = <double*>calloc(self.nseg, sizeof(double))
        self.seg_start = <double*>calloc(self.nseg, sizeof(double))
        self.seg_offset = <double*>calloc(self.nseg, sizeof(double))
        arrivals = 0.0
        offset = 0.0
        for i in range(self.nseg):
            segment = segments[i]
            self.seg_duration[i] = segment.duration
            self.seg_r0[i] = segment.start_rate
            self.seg_r1[i] = segment.end_rate
            self.seg_start[i] = arrivals
            self.seg_offset[i] = offset
            arrivals += segment.arrivals
            offset += segment.duration
        first = segments[0]
        self.rate = (
            first.start_rate
            if self.nseg == 1 and first.start_rate == first.end_rate and first.start_rate > 0
            else 0.0
        )
        self.total = schedule.total
        self.step = workers
        self.workers = workers
        self.k = worker
        self.next_time = start + self._time_of(worker) if worker < self.total else NEVER
        self.next_timeout_check = start
        self.capacity = self.connections
        self.conns = <Conn*>calloc(self.capacity, sizeof(Conn))
        self.free_list = <int*>calloc(self.capacity, sizeof(int))
        self.idle_stack = <int*>calloc(self.capacity, sizeof(int))
        self.pending = <int*>calloc(self.capacity, sizeof(int))
        if (
            self.conns == NULL or self.free_list == NULL or self.idle_stack == NULL
            or self.pending == NULL or self.cycle == NULL or self.data == NULL
        ):
            raise MemoryError()
        for i in range(self.capacity):
            self.conns[i].fd = -1
            self.free_list[i] = self.capacity - 1 - <int>i
        self.nfree = self.capacity
        self._conns = [None] * self.capacity
        self.bl_cap = 1024
        self.backlog = <Entry*>malloc(self.bl_cap * sizeof(Entry))
        self.capwin = 0
        self.nwin = 0
        if self.native:
            host, port = address if address is not None else (plan.target.host, plan.target.port)
            self._open_io(host, port)

    def __dealloc__(self):
        cdef Py_ssize_t i
        if self.conns != NULL:
            for i in range(self.capacity):
                if self.conns[i].fd >= 0:
                    close(self.conns[i].fd)
                free(self.conns[i].pend)
        for fd in (self.epfd, self.timerfd, self.wakefd, self.ep_main, self.ep_timer):
            if fd >= 0:
                close(fd)
        if self.cells != NULL:
            for i in range(self.nwin * self.npaths):
                free(self.cells[i].counts)
        free(self.cells)
        free(self.failed_w)
        free(self.errors_w)
        free(self.dropped_w)
        free(self.completed_w)
        free(self.failed_p)
        free(self.errors_p)
        free(self.conns)
        free(self.free_list)
        free(self.idle_stack)
        free(self.pending)
        free(self.backlog)
        free(self.data)
        free(self.data_len)
        free(self.head)
        free(self.cycle)
        free(self.seg_duration)
        free(self.seg_r0)
        free(self.seg_r1)
        free(self.seg_start)
        free(self.seg_offset)
        free(self.rbuf)
        free(self.events)

    # -- the schedule ------------------------------------------------------------------------------

    cdef double _time_of(self, int64_t k) noexcept nogil:
        """ArrivalSchedule.time_of, with the same float operations."""
        cdef int index
        cdef double n, slope, root, denominator, d
        if self.rate > 0:
            return <double>k / self.rate
        index = self.cursor
        if k < self.seg_start[index]:
            index = 0
        while index < self.nseg - 1 and self.seg_start[index + 1] <= k:
            index += 1
        self.cursor = index
        n = <double>k - self.seg_start[index]
        if n <= 0:
            return self.seg_offset[index] + 0.0
        d = self.seg_duration[index]
        slope = (self.seg_r1[index] - self.seg_r0[index]) / d
        root = pow(self.seg_r0[index], 2.0) + 2.0 * n * slope
        root = sqrt(root if root > 0.0 else 0.0)
        denominator = self.seg_r0[index] + root
        if denominator <= 0:
            return self.seg_offset[index] + d
        root = 2.0 * n / denominator
        return self.seg_offset[index] + (d if d < root else root)

    cdef double _rate_at(self, double t) noexcept nogil:
        cdef int i
        cdef double fraction
        for i in range(self.nseg):
            if t < self.seg_offset[i] + self.seg_duration[i]:
                fraction = (t - self.seg_offset[i]) / self.seg_duration[i]
                return self.seg_r0[i] + (self.seg_r1[i] - self.seg_r0[i]) * fraction
        return 0.0

    # -- the recorder ------------------------------------------------------------------------------

    cdef Py_ssize_t _window_index(self, double at) noexcept nogil:
        cdef double position = (at - self.start) / self.window
        cdef Py_ssize_t index = <Py_ssize_t>position if position > 0 else 0
        cdef Py_ssize_t capacity, j
        cdef Cell* cells
        if index < self.nwin:
            return index
        if index >= self.capwin:
            capacity = self.capwin * 2 if self.capwin else 16
            while capacity <= index:
                capacity *= 2
            cells = <Cell*>realloc(self.cells, capacity * self.npaths * sizeof(Cell))
            if cells == NULL:
                return -1
            self.cells = cells
            self.failed_w = <int64_t*>realloc(self.failed_w, capacity * sizeof(int64_t))
            self.errors_w = <int64_t*>realloc(self.errors_w, capacity * sizeof(int64_t))
            self.dropped_w = <int64_t*>realloc(self.dropped_w, capacity * sizeof(int64_t))
            self.completed_w = <int64_t*>realloc(self.completed_w, capacity * sizeof(int64_t))
            self.capwin = capacity
        for j in range(self.nwin, index + 1):
            memset(&self.cells[j * self.npaths], 0, self.npaths * sizeof(Cell))
            self.failed_w[j] = 0
            self.errors_w[j] = 0
            self.dropped_w[j] = 0
            self.completed_w[j] = 0
        for j in range(self.nwin * self.npaths, (index + 1) * self.npaths):
            self.cells[j].min = 1 << 62
            self.cells[j].max = -1
        self.nwin = index + 1
        return index

    cdef void _record_response(self, int path, double intended, double now, int status) noexcept nogil:
        cdef Py_ssize_t w = self._window_index(intended)
        cdef int64_t micros = <int64_t>((now - intended) * 1000000.0 + 0.5)
        cdef int64_t index
        cdef int shift
        cdef Py_ssize_t size
        cdef Cell* cell
        cdef int64_t* counts
        if w < 0:
            return
        cell = &self.cells[w * self.npaths + path]
        if micros < 256:
            if micros < 0:
                micros = 0
            index = micros
        else:
            shift = 64 - __builtin_clzll(<unsigned long long>micros) - 8
            index = (<int64_t>shift << 7) + (micros >> shift)
            if index > MAX_INDEX:
                index = MAX_INDEX
        if index >= cell.size:
            size = cell.size * 2 if cell.size else 1024
            while size <= index:
                size *= 2
            if size > MAX_INDEX + 1:
                size = MAX_INDEX + 1
            counts = <int64_t*>realloc(cell.counts, size * sizeof(int64_t))
            if counts == NULL:
                return
            memset(&counts[cell.size], 0, (size - cell.size) * sizeof(int64_t))
            cell.counts = counts
            cell.size = size
        cell.counts[index] += 1
        cell.count += 1
        cell.total += micros
        if micros > cell.max:
            cell.max = micros
        if micros < cell.min:
            cell.min = micros
        w = self._window_index(now)
        if w >= 0:
            self.completed_w[w] += 1
        if 100 <= status <= 999:
            self.statuses[status] += 1
        if not 200 <= status < 400:
            w = self._window_index(intended)
            self.errors_w[w] += 1
            self.errors_p[path] += 1
            self.r_errors += 1

    cdef void _record_failure(self, int path, double intended, double now, int kind) noexcept nogil:
        cdef Py_ssize_t w = self._window_index(intended)
        if w < 0:
            return
        self.failed_w[w] += 1
        self.errors_w[w] += 1
        self.failed_p[path] += 1
        self.errors_p[path] += 1
        self.r_errors += 1
        self.failures[kind] += 1
        w = self._window_index(now)
        if w >= 0:
            self.completed_w[w] += 1

    cdef void _record_drop(self, int path, double intended) noexcept nogil:
        cdef Py_ssize_t w = self._window_index(intended)
        if w >= 0:
            self.dropped_w[w] += 1
        self.r_dropped += 1

    @property
    def stats(self):
        """What was measured so far, as :class:`~shoal.loadgen.stats.RunStats` (a snapshot)."""
        cdef Py_ssize_t w, p, last
        cdef Cell* cell
        stats = RunStats(self.npaths, self.start, window=self.window)
        for w in range(self.nwin):
            window = Window()
            histograms = []
            for p in range(self.npaths):
                cell = &self.cells[w * self.npaths + p]
                histogram = Histogram()
                if cell.count:
                    last = cell.size
                    while last and not cell.counts[last - 1]:
                        last -= 1
                    histogram.counts = [cell.counts[i] for i in range(last)]
                    histogram.count = cell.count
                    histogram.total = cell.total
                    histogram.min = cell.min
                    histogram.max = cell.max
                histograms.append(histogram)
            window.latency = Histogram.merged(histograms)
            window.requests = window.latency.count + self.failed_w[w]
            window.errors = self.errors_w[w]
            window.dropped = self.dropped_w[w]
            window.completed = self.completed_w[w]
            stats.windows.append(window)
            for path, histogram in zip(stats.paths, histograms):
                path.latency.merge(histogram)
        for p in range(self.npaths):
            path = stats.paths[p]
            path.requests = path.latency.count + self.failed_p[p]
            path.errors = self.errors_p[p]
        stats.requests = sum(path.requests for path in stats.paths)
        stats.statuses = {s: self.statuses[s] for s in range(100, 1000) if self.statuses[s]}
        stats.failures = {
            FAILURE_NAMES[i]: self.failures[i] for i in range(4) if self.failures[i]
        }
        stats.errors = self.r_errors
        stats.dropped = self.r_dropped
        stats.late = self.r_late
        stats.sent = self.r_sent
        stats.scheduled = self.r_scheduled
        stats.end = self.r_end if self.has_end else None
        stats.stopped = self.r_stopped
        stats.cpu = self.cpu
        return stats

    # -- the pool (Engine's rules) -----------------------------------------------------------------

    @property
    def next_due(self):
        return float("inf") if self.next_time >= NEVER else self.next_time

    @property
    def finished(self):
        return self._finished()

    @property
    def idle(self):
        """Handles of the idle connections."""
        return [self._handle(self.idle_stack[i]) for i in range(self.nidle)]

    @property
    def busy(self):
        return [self._handle(i) for i in range(self.capacity) if self.conns[i].state == S_BUSY]

    cdef inline object _handle(self, int i):
        return (self.conns[i].serial << INDEX_BITS) | i

    cdef int _slot(self, object handle) except -2:
        cdef uint64_t value = handle
        cdef int i = value & INDEX_MASK
        if i >= self.capacity or self.conns[i].serial != (value >> INDEX_BITS):
            return -1
        return i

    cdef inline bint _finished(self) noexcept nogil:
        return self.stopped or (
            self.next_time >= NEVER and self.bl_len == 0 and self.inflight == 0
            and self.connecting == 0
        )

    cdef double _pump(self, double now) noexcept nogil:
        """Engine.pump; -1: finished."""
        cdef double wake, limit
        if self.stopped:
            return -1
        if self.next_time <= now:
            self._send_due(now)
        if self.bl_len:
            self._drop_expired(now)
        if now >= self.next_timeout_check:
            self._expire(now)
            limit = self.timeout / 10
            self.next_timeout_check = now + (0.1 if 0.1 < limit else limit)
        if self._finished():
            if not self.has_end:
                self.r_end = now
                self.has_end = True
            return -1
        wake = self.next_timeout_check if (self.inflight or self.connecting) else NEVER
        if self.next_time < wake:
            wake = self.next_time
        if self.bl_len:
            limit = self.backlog[self.bl_head].intended + self.drop_after
            if limit < wake:
                wake = limit
        return wake if wake < NEVER else now + 0.1

    def pump(self, double now):
        """Do everything due at ``now``; the time to be called next (None: finished)."""
        cdef double wake = self._pump(now)
        return None if wake < 0 else wake

    cdef void _send_due(self, double now) noexcept nogil:
        cdef double intended = self.next_time
        cdef int path, i
        while intended <= now:
            path = self.cycle[self.k % self.ncycle]
            if self.nidle:
                self.nidle -= 1
                i = self.idle_stack[self.nidle]
                self._send(i, path, intended, now)
            elif self.open < self.connections:
                self._connect(path, intended, now)
            else:
                self._backlog_push(intended, path)
            self.r_scheduled += 1
            self.k += self.step
            if self.k >= self.total:
                intended = NEVER
            elif self.rate > 0:
                intended = self.start + <double>self.k / self.rate
            else:
                intended = self.start + self._time_of(self.k)
        self.next_time = intended

    cdef void _backlog_push(self, double intended, int path) noexcept nogil:
        cdef Py_ssize_t capacity, i
        cdef Entry* grown
        if self.bl_len == self.bl_cap:
            capacity = self.bl_cap * 2
            grown = <Entry*>malloc(capacity * sizeof(Entry))
            if grown == NULL:
                self._record_drop(path, intended)
                return
            for i in range(self.bl_len):
                grown[i] = self.backlog[(self.bl_head + i) % self.bl_cap]
            free(self.backlog)
            self.backlog = grown
            self.bl_cap = capacity
            self.bl_head = 0
        i = (self.bl_head + self.bl_len) % self.bl_cap
        self.backlog[i].intended = intended
        self.backlog[i].path = path
        self.bl_len += 1

    cdef inline Entry _backlog_pop(self) noexcept nogil:
        cdef Entry entry = self.backlog[self.bl_head]
        self.bl_head = (self.bl_head + 1) % self.bl_cap
        self.bl_len -= 1
        return entry

    cdef void _drop_expired(self, double now) noexcept nogil:
        cdef Entry entry
        while self.bl_len and self.backlog[self.bl_head].intended + self.drop_after <= now:
            entry = self._backlog_pop()
            self._record_drop(entry.path, entry.intended)

    cdef void _connect(self, int path, double intended, double now) noexcept nogil:
        cdef int i
        cdef Conn* c
        if self.nfree == 0:  # cannot happen: open < connections == capacity
            self._record_drop(path, intended)
            return
        self.nfree -= 1
        i = self.free_list[self.nfree]
        c = &self.conns[i]
        self.serial += 1
        c.serial = self.serial
        c.state = S_CONNECTING
        c.path = path
        c.intended = intended
        c.sent = now
        c.opened = _monotonic() if self.native else now
        c.pstate = P_HEAD
        c.pend_len = 0
        c.wpending = 0
        c.head_only = 0
        self.open += 1
        self.connecting += 1
        self._io_open(i)

    cdef void _send(self, int i, int path, double intended, double now) noexcept nogil:
        cdef Conn* c = &self.conns[i]
        c.state = S_BUSY
        c.path = path
        c.intended = intended
        c.sent = now
        self.inflight += 1
        self.r_sent += 1
        if now - intended > self.late_after:
            self.r_late += 1
        self._io_send(i)

    cdef void _release(self, int i, double now) noexcept nogil:
        cdef Entry entry
        if self.stopped:
            self._close(i, True)
            return
        if self.bl_len:
            self._drop_expired(now)
        if self.bl_len:
            entry = self._backlog_pop()
            self._send(i, entry.path, entry.intended, now)
        else:
            self.conns[i].state = S_IDLE
            self.idle_stack[self.nidle] = i
            self.nidle += 1

    cdef void _close(self, int i, bint tell) noexcept nogil:
        cdef Conn* c = &self.conns[i]
        cdef int state = c.state
        cdef int j
        if state == S_CLOSED or state == S_FREE:
            return
        if state == S_BUSY:
            self.inflight -= 1
        elif state == S_IDLE:
            for j in range(self.nidle):
                if self.idle_stack[j] == i:
                    memmove(&self.idle_stack[j], &self.idle_stack[j + 1], (self.nidle - j - 1) * sizeof(int))
                    self.nidle -= 1
                    break
        elif state == S_CONNECTING:
            self.connecting -= 1
        self.open -= 1
        self._free(i, tell)

    cdef void _free(self, int i, bint tell) noexcept nogil:
        """The slot is closed: its connection goes, its index is reused (with a new serial)."""
        cdef Conn* c = &self.conns[i]
        c.state = S_FREE
        c.serial = 0
        self._io_close(i, tell)
        self.free_list[self.nfree] = i
        self.nfree += 1

    cdef void _refill(self, double now) noexcept nogil:
        cdef Entry entry
        if self.stopped:
            return
        if self.bl_len:
            self._drop_expired(now)
        if self.bl_len and self.open < self.connections:
            entry = self._backlog_pop()
            self._connect(entry.path, entry.intended, now)

    cdef void _expire(self, double now) noexcept nogil:
        cdef double limit = now - self.timeout
        cdef double connect_limit = _monotonic() - self.timeout if self.native else 0.0
        cdef int i
        cdef Conn* c
        for i in range(self.capacity):
            c = &self.conns[i]
            if c.state == S_BUSY and c.sent <= limit:
                self._record_failure(c.path, c.intended, now, F_TIMEOUT)
                self._close(i, True)
                self._refill(now)
            elif self.native and c.state == S_CONNECTING and c.opened <= connect_limit:
                # the Python driver's asyncio.timeout around the connect
                self._connect_failed(i, now, F_TIMEOUT)

    cdef void _connected(self, int i, double now) noexcept nogil:
        cdef Conn* c = &self.conns[i]
        if c.state != S_CONNECTING:
            return
        self.connecting -= 1
        if self.stopped:
            c.state = S_IDLE
            self.idle_stack[self.nidle] = i
            self.nidle += 1
            self._close(i, True)
            return
        if c.path < 0:
            self._release(i, now)
            return
        self._send(i, c.path, c.intended, now)

    cdef void _connect_failed(self, int i, double now, int kind) noexcept nogil:
        cdef Conn* c = &self.conns[i]
        cdef int path = c.path
        cdef double intended = c.intended, sent = c.sent
        if c.state != S_CONNECTING:
            return
        self.connecting -= 1
        self.open -= 1
        self._free(i, True)
        if self.stopped:
            return
        if path >= 0:
            self._fail_waiting(path, intended, sent, now, kind)
        self._refill(now)

    cdef void _fail_waiting(self, int path, double intended, double sent, double now, int kind) noexcept nogil:
        self.r_sent += 1
        if sent - intended > self.late_after:
            self.r_late += 1
        self._record_failure(path, intended, now, kind)

    cdef void _response(
        self, int i, double now, double done_at, int status, bint keep_alive
    ) noexcept nogil:
        """Engine.response; ``done_at``: when the bytes arrived (the kernel's receive time),
        which the latency is measured to; ``now``: when they were read."""
        cdef Conn* c = &self.conns[i]
        if c.state != S_BUSY:
            return
        self._record_response(c.path, c.intended, done_at, status)
        self.inflight -= 1
        if not keep_alive:
            c.state = S_IDLE
            self.idle_stack[self.nidle] = i
            self.nidle += 1
            self._close(i, True)
            self._refill(now)
        elif self.bl_len or self.stopped:
            self._release(i, now)
        else:
            c.state = S_IDLE
            self.idle_stack[self.nidle] = i
            self.nidle += 1

    cdef void _lost(self, int i, double now, int kind) noexcept nogil:
        cdef Conn* c = &self.conns[i]
        cdef int state = c.state
        if state == S_CLOSED or state == S_FREE:
            return
        if state == S_BUSY:
            self._record_failure(c.path, c.intended, now, kind)
        elif state == S_CONNECTING and c.path >= 0 and not self.stopped:
            self._fail_waiting(c.path, c.intended, c.sent, now, kind)
        self._close(i, False)
        self._refill(now)

    cdef void _stop(self, double now) noexcept nogil:
        cdef int i
        if self.stopped:
            return
        if not self._finished():
            self.r_stopped = True
        self.stopped = True
        self.bl_len = 0
        self.bl_head = 0
        for i in range(self.capacity):
            if self.conns[i].state != S_FREE:
                self._close(i, True)
        if not self.has_end:
            self.r_end = now
            self.has_end = True

    # -- the Python engine's interface (callback mode, and the driver) -----------------------------

    def connected(self, slot, conn, double now):
        """The connection opened for ``slot`` is up: send the request that waited for it."""
        cdef int i = self._slot(slot)
        if i < 0 or self.conns[i].state != S_CONNECTING:
            return
        self._conns[i] = conn
        self._connected(i, now)

    def connect_failed(self, slot, double now, str kind="connect"):
        cdef int i = self._slot(slot)
        if i >= 0:
            self._connect_failed(i, now, FAILURE_NAMES.index(kind))

    def response(self, slot, double now, int status, bint keep_alive):
        """A complete response arrived on ``slot``'s connection."""
        cdef int i = self._slot(slot)
        if i >= 0:
            self._response(i, now, now, status, keep_alive)

    def lost(self, slot, double now, str kind="reset"):
        """The connection closed or broke; a request on it fails."""
        cdef int i = self._slot(slot)
        if i >= 0:
            self._lost(i, now, FAILURE_NAMES.index(kind))

    def preconnect(self, int count):
        """Open up to ``count`` connections ahead of the first request; they wait idle."""
        cdef int n = count if count < self.connections - self.open else self.connections - self.open
        for _ in range(n):
            self._connect(-1, 0.0, 0.0)

    def begin_at(self, double start):
        """Move the schedule's zero to ``start`` (before anything was due)."""
        if self.r_scheduled:
            raise RuntimeError("the run has begun; its start cannot move")
        self.start = start
        self.next_time = start + self._time_of(self.k) if self.k < self.total else NEVER
        self.next_timeout_check = start

    def stop(self, double now):
        """Stop sending: close every connection; requests in flight or waiting are not counted."""
        self._stop(now)

    # -- I/O: callbacks or syscalls ----------------------------------------------------------------

    cdef void _io_open(self, int i) noexcept nogil:
        cdef Conn* c = &self.conns[i]
        cdef int fd, one = 1
        cdef epoll_event event
        if not self.native:
            with gil:
                try:
                    self._open_cb(self._handle(i))
                except BaseException:  # a broken callback must not unwind through C
                    import traceback
                    traceback.print_exc()
            return
        fd = socket(self.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)
        c.fd = fd
        if fd < 0:
            self._defer_failure(i)
            return
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(int))
        setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(int))
        if connect(fd, <sockaddr*>self.addr, self.addrlen) != 0 and errno != EINPROGRESS:
            self._defer_failure(i)
            return
        event.events = EPOLLOUT | EPOLLET
        event.data.u64 = (c.serial << INDEX_BITS) | <uint64_t>i
        if epoll_ctl(self.epfd, EPOLL_CTL_ADD, fd, &event) != 0:
            self._defer_failure(i)

    cdef void _defer_failure(self, int i) noexcept nogil:
        """A connect that failed at once is reported from the loop, as if it had failed later
        (the engine is in the middle of a call)."""
        self.pending[self.npending] = i
        self.npending += 1

    cdef void _io_send(self, int i) noexcept nogil:
        cdef Conn* c = &self.conns[i]
        cdef int path = c.path
        if not self.native:
            with gil:
                try:
                    self._conns[i].send(self._data_objs[path], bool(self.head[path]))
                except BaseException:
                    import traceback
                    traceback.print_exc()
            return
        c.head_only = self.head[path]
        c.wpos = 0
        self._write(i)

    cdef void _write(self, int i) noexcept nogil:
        cdef Conn* c = &self.conns[i]
        cdef Py_ssize_t n, left = self.data_len[c.path] - c.wpos
        cdef epoll_event event
        n = send(c.fd, self.data[c.path] + c.wpos, left, MSG_NOSIGNAL)
        if n == left:
            if c.wpending:
                c.wpending = 0
                event.events = EPOLLIN | EPOLLET
                event.data.u64 = (c.serial << INDEX_BITS) | <uint64_t>i
                epoll_ctl(self.epfd, EPOLL_CTL_MOD, c.fd, &event)
            return
        if n < 0:
            if errno != EAGAIN and errno != EWOULDBLOCK and errno != EINTR:
                return  # broken: the socket reports it as readable (error or EOF) next
            n = 0
        c.wpos += n
        if not c.wpending:
            c.wpending = 1
            event.events = EPOLLIN | EPOLLOUT | EPOLLET
            event.data.u64 = (c.serial << INDEX_BITS) | <uint64_t>i
            epoll_ctl(self.epfd, EPOLL_CTL_MOD, c.fd, &event)

    cdef void _io_close(self, int i, bint tell) noexcept nogil:
        cdef Conn* c = &self.conns[i]
        if not self.native:
            with gil:
                conn = self._conns[i]
                self._conns[i] = None
                if tell and conn is not None:
                    try:
                        conn.close()
                    except BaseException:
                        import traceback
                        traceback.print_exc()
            return
        if c.fd >= 0:
            close(c.fd)  # also leaves the epoll set
            c.fd = -1
        c.pend_len = 0

    # -- the native loop ---------------------------------------------------------------------------

    cdef void _open_io(self, host, int port) except *:
        cdef epoll_event event
        infos = _socket.getaddrinfo(host, port, type=_socket.SOCK_STREAM)
        if not infos:
            raise OSError(f"cannot resolve {host}")
        family, _, _, _, sockaddr = infos[0]
        memset(self.addr, 0, sizeof(self.addr))
        packed = _socket.inet_pton(family, sockaddr[0])
        self.family = AF_INET6 if family == _socket.AF_INET6 else AF_INET
        # struct sockaddr_in / sockaddr_in6: family (host order), port (network order), address
        (<unsigned short*>self.addr)[0] = <unsigned short>self.family
        self.addr[2] = <char>((port >> 8) & 0xFF)
        self.addr[3] = <char>(port & 0xFF)
        if self.family == AF_INET:
            memcpy(&self.addr[4], <const char*>(<bytes>packed), 4)
            self.addrlen = 16
        else:
            memcpy(&self.addr[8], <const char*>(<bytes>packed), 16)
            (<uint32_t*>&self.addr[24])[0] = <uint32_t>(sockaddr[3] if len(sockaddr) > 3 else 0)
            self.addrlen = 28
        self.rbuf = <char*>malloc(READ_SIZE)
        self.events = <epoll_event*>malloc(512 * sizeof(epoll_event))
        if self.rbuf == NULL or self.events == NULL:
            raise MemoryError()
        self.epfd = epoll_create1(EPOLL_CLOEXEC)
        self.ep_main = epoll_create1(EPOLL_CLOEXEC)
        self.ep_timer = epoll_create1(EPOLL_CLOEXEC)
        self.timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)
        self.wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
        if min(self.epfd, self.ep_main, self.ep_timer, self.timerfd, self.wakefd) < 0:
            raise OSError(errno, "epoll, timerfd or eventfd failed")
        event.events = EPOLLIN
        for ep in (self.ep_main, self.ep_timer):
            event.data.u64 = TAG_TIMER
            epoll_ctl(ep, EPOLL_CTL_ADD, self.timerfd, &event)
            event.data.u64 = TAG_WAKE
            epoll_ctl(ep, EPOLL_CTL_ADD, self.wakefd, &event)
        event.data.u64 = TAG_SOCKETS
        epoll_ctl(self.ep_main, EPOLL_CTL_ADD, self.epfd, &event)

    def interrupt(self):
        """End the running slice at once (thread-safe: a write to an eventfd)."""
        cdef uint64_t one = 1
        if self.wakefd >= 0:
            write(self.wakefd, &one, 8)

    def arm(self, double when):
        """Fire the timer at ``when`` (seconds on ``time.monotonic()``)."""
        self._arm(when)

    cdef void _arm(self, double when) noexcept nogil:
        cdef itimerspec spec
        cdef int64_t nanos = <int64_t>(when * 1e9)
        if nanos <= 0:
            nanos = 1
        memset(&spec, 0, sizeof(spec))
        spec.it_value.tv_sec = nanos // 1000000000
        spec.it_value.tv_nsec = nanos % 1000000000
        timerfd_settime(self.timerfd, TFD_TIMER_ABSTIME, &spec, NULL)
        self.timer_at = when

    def warm(self, double deadline):
        """Wait (GIL released) until the connections opening are up, or ``deadline``."""
        if not self.native:
            raise RuntimeError("warm() runs the native loop; this engine has callbacks")
        self.running = True
        try:
            with nogil:
                self._loop(deadline, True)
        finally:
            self.running = False

    def run_slice(self, double until):
        """Run (GIL released) until ``until``, the end of the run, or :meth:`interrupt`:
        ``SLICE``, ``DONE`` or ``INTERRUPTED``."""
        cdef int result
        if not self.native:
            raise RuntimeError("run_slice() runs the native loop; this engine has callbacks")
        self.running = True
        try:
            with nogil:
                result = self._loop(until, False)
        finally:
            self.running = False
        return result

    cdef int _loop(self, double until, bint warming) noexcept nogil:
        cdef int n, j, timeout_ms, i
        cdef double now, wake, soonest, slack, rate, remaining
        cdef uint64_t tag, scratch
        cdef bint fired, woken
        cdef epoll_event ready[4]
        cdef timespec real
        while True:
            while self.npending:
                self.npending -= 1
                i = self.pending[self.npending]
                if self.conns[i].state == S_CONNECTING:
                    self._connect_failed(i, _monotonic(), F_CONNECT)
            if warming and self.connecting == 0:
                return R_SLICE
            if self.stopped:
                return R_DONE
            now = _monotonic()
            if now >= until:
                return R_SLICE
            remaining = (until - now) * 1000.0 + 1.0
            timeout_ms = <int>remaining if remaining < 1e9 else 1000000000
            # Responses wait for a near tick, unless requests wait for their connections (the
            # backlog: then each response serves one at once, as in the Python engine).
            n = epoll_wait(
                self.ep_timer
                if not warming and self.bl_len == 0 and self.timer_at - now <= DEFER
                else self.ep_main,
                ready, 4, timeout_ms,
            )
            now = _monotonic()
            clock_gettime(CLOCK_REALTIME, &real)
            self.real_offset = (
                <int64_t>real.tv_sec * 1000000000 + real.tv_nsec - <int64_t>(now * 1e9)
            )
            fired = woken = False
            for j in range(n if n > 0 else 0):
                tag = ready[j].data.u64
                if tag == TAG_TIMER:
                    read(self.timerfd, &scratch, 8)
                    self.timer_at = NEVER
                    fired = True
                elif tag == TAG_WAKE:
                    read(self.wakefd, &scratch, 8)
                    woken = True
            # every socket ready, before the due requests go (they may reuse its connection)
            n = 512
            while n == 512:
                n = epoll_wait(self.epfd, self.events, 512, 0)
                for j in range(n if n > 0 else 0):
                    self._on_event(self.events[j].data.u64, self.events[j].events, now)
            if fired and not warming:
                wake = self._pump(now)
                if wake < 0:
                    return R_DONE
                # the Python driver's _Ticker.slack_at and fire
                rate = self._rate_at(now - self.start) / self.workers
                slack = self.timer_slack * (rate / 20000.0 if rate < 20000.0 else 1.0)
                soonest = now + (slack if slack > 2e-5 else 2e-5)
                if wake < soonest:
                    wake = soonest
                elif wake > now + 0.05:
                    wake = now + 0.05
                self._arm(wake)
            if woken:
                return R_INTERRUPTED

    cdef double _received(self, msghdr* message, double now) noexcept nogil:
        """When the bytes read arrived (their receive timestamp, on the monotonic clock)."""
        cdef cmsghdr* cmsg = CMSG_FIRSTHDR(message)
        cdef timespec* stamp
        cdef double at
        while cmsg != NULL:
            if cmsg.cmsg_level == SOL_SOCKET and cmsg.cmsg_type == SCM_TIMESTAMPNS:
                stamp = <timespec*>CMSG_DATA(cmsg)
                at = <double>(
                    <int64_t>stamp.tv_sec * 1000000000 + stamp.tv_nsec - self.real_offset
                ) * 1e-9
                return at if at < now else now
            cmsg = CMSG_NXTHDR(message, cmsg)
        return now

    cdef void _on_event(self, uint64_t tag, uint32_t events, double now) noexcept nogil:
        cdef int i = <int>(tag & INDEX_MASK)
        cdef Conn* c
        cdef int err = 0
        cdef socklen_t size = sizeof(int)
        cdef epoll_event event
        cdef ssize_t n
        cdef iovec vector
        cdef msghdr message
        if i >= self.capacity:
            return
        c = &self.conns[i]
        if c.serial != (tag >> INDEX_BITS) or c.state == S_FREE or c.fd < 0:
            return  # a connection closed earlier in this batch
        if c.state == S_CONNECTING:
            if getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &size) != 0 or err != 0:
                self._connect_failed(i, now, F_CONNECT)
                return
            event.events = EPOLLIN | EPOLLET
            event.data.u64 = tag
            epoll_ctl(self.epfd, EPOLL_CTL_MOD, c.fd, &event)
            self._connected(i, now)
            return
        if events & EPOLLOUT and c.wpending and c.state == S_BUSY:
            self._write(i)
            if c.serial != (tag >> INDEX_BITS):
                return
        if not (events & (EPOLLIN | EPOLLERR | EPOLLHUP)):
            return
        vector.iov_base = self.rbuf
        vector.iov_len = READ_SIZE
        memset(&message, 0, sizeof(message))
        message.msg_iov = &vector
        message.msg_iovlen = 1
        message.msg_control = self.control
        message.msg_controllen = sizeof(self.control)
        # Edge-triggered (an fd read is not polled again until more arrives): read until a
        # short read.
        while True:
            n = recvmsg(c.fd, &message, 0)
            if n <= 0:
                break
            if self._feed(i, self.rbuf, n, now, self._received(&message, now)) < 0:
                self._lost(i, now, F_PROTOCOL)
                return
            if n < READ_SIZE or c.serial != (tag >> INDEX_BITS) or c.fd < 0:
                return
            message.msg_controllen = sizeof(self.control)
        if n < 0 and (errno == EAGAIN or errno == EWOULDBLOCK or errno == EINTR):
            return
        if n == 0 and c.pstate == P_UNTIL_CLOSE:  # the close ends the body
            c.pstate = P_HEAD
            self._response(i, now, now, c.status, False)
            if c.serial != (tag >> INDEX_BITS):
                return
        self._lost(i, now, F_RESET)

    # -- the HTTP/1.1 response parser (http.PureParser's rules) ------------------------------------

    cdef int _feed(
        self, int i, const char* data, Py_ssize_t n, double now, double done_at
    ) noexcept nogil:
        """Parse what arrived; -1: not HTTP (the connection goes)."""
        cdef Conn* c = &self.conns[i]
        cdef const char* buf
        cdef Py_ssize_t length, position = 0, capacity
        cdef char* grown
        cdef uint64_t serial = c.serial
        cdef int result
        if c.pend_len:
            if c.pend_len + n > c.pend_cap:
                capacity = c.pend_cap * 2 if c.pend_cap else 4096
                while capacity < c.pend_len + n:
                    capacity *= 2
                grown = <char*>realloc(c.pend, capacity)
                if grown == NULL:
                    return -1
                c.pend = grown
                c.pend_cap = capacity
            memcpy(c.pend + c.pend_len, data, n)
            c.pend_len += n
            buf = c.pend
            length = c.pend_len
        else:
            buf = data
            length = n
        result = self._parse(i, buf, length, &position, now, done_at)
        if c.serial != serial or c.state == S_FREE:
            return 0  # closed by a response (Connection: close): the rest is not read
        if result < 0:
            return -1
        if position >= length:
            c.pend_len = 0
            return 0
        if buf == c.pend:
            memmove(c.pend, c.pend + position, length - position)
            c.pend_len = length - position
            return 0
        if length - position > c.pend_cap:
            capacity = 4096
            while capacity < length - position:
                capacity *= 2
            grown = <char*>realloc(c.pend, capacity)
            if grown == NULL:
                return -1
            c.pend = grown
            c.pend_cap = capacity
        memcpy(c.pend, buf + position, length - position)
        c.pend_len = length - position
        return 0

    cdef int _parse(
        self, int i, const char* buf, Py_ssize_t length, Py_ssize_t* at, double now,
        double done_at,
    ) noexcept nogil:
        """Report every response the bytes complete; -1: not HTTP."""
        cdef Conn* c = &self.conns[i]
        cdef uint64_t serial = c.serial
        cdef int result
        while True:
            result = _next_response(c, buf, length, at)
            if result <= 0:
                return result
            self._response(i, now, done_at, c.status, c.keep)
            if c.serial != serial:
                return 0


# -- the HTTP/1.1 response parser (http.PureParser's rules), on one connection's state ----------


cdef int _next_response(Conn* c, const char* buf, Py_ssize_t length, Py_ssize_t* at) noexcept nogil:
    """Run ``c``'s parser on ``buf`` from ``at[0]``: 1 when a response completed (its status and
    keep-alive in ``c``, ``at[0]`` just past it), 0 when more bytes are needed (``at[0]``: what
    was consumed), -1 when the bytes are not a valid response."""
    cdef Py_ssize_t position = at[0], end, available, a, b
    cdef int64_t size
    cdef int digit, state
    while True:
        state = c.pstate
        if state == P_HEAD:
            end = _find_head_end(buf, position, length)
            if end < 0:
                if length - position > MAX_HEAD:
                    return -1
                break
            if _parse_head(c, buf + position, end - position) < 0:
                return -1
            position = end + 4
            if c.pstate == P_HEAD:  # no body (or an interim 1xx)
                if c.status >= 200:
                    at[0] = position
                    return 1
                continue
        elif state == P_LENGTH:
            available = length - position
            if available < c.remaining:
                c.remaining -= available
                position = length
                break
            position += c.remaining
            c.pstate = P_HEAD
            at[0] = position
            return 1
        elif state == P_CHUNK_SIZE:
            end = _find_crlf(buf, position, length)
            if end < 0:
                if length - position > 1024:
                    return -1
                break
            b = end
            a = position
            while a < b and buf[a] != 59:  # ';' starts chunk extensions
                a += 1
            b = a
            a = position
            while a < b and _space(<unsigned char>buf[a]):
                a += 1
            while b > a and _space(<unsigned char>buf[b - 1]):
                b -= 1
            if b == a or b - a > 16:
                return -1
            size = 0
            while a < b:
                digit = _lower(<unsigned char>buf[a])
                if 48 <= digit <= 57:
                    size = size * 16 + (digit - 48)
                elif 97 <= digit <= 102:
                    size = size * 16 + (digit - 87)
                else:
                    return -1
                a += 1
            position = end + 2
            if size == 0:
                c.pstate = P_TRAILERS
            else:
                c.remaining = size
                c.pstate = P_CHUNK_DATA
        elif state == P_CHUNK_DATA:
            available = length - position
            if available < c.remaining:
                c.remaining -= available
                position = length
                break
            position += c.remaining
            c.pstate = P_CHUNK_CRLF
        elif state == P_CHUNK_CRLF:
            if length - position < 2:
                break
            if buf[position] != 13 or buf[position + 1] != 10:
                return -1
            position += 2
            c.pstate = P_CHUNK_SIZE
        elif state == P_TRAILERS:
            end = _find_crlf(buf, position, length)
            if end < 0:
                if length - position > MAX_HEAD:
                    return -1
                break
            a = end - position
            position = end + 2
            if a == 0:
                c.pstate = P_HEAD
                at[0] = position
                return 1
        else:  # P_UNTIL_CLOSE: everything is body
            position = length
            break
    at[0] = position
    return 0



cdef int _parse_head(Conn* c, const char* p, Py_ssize_t n) noexcept nogil:
    """The status line and headers (http.PureParser._head's rules); -1: invalid."""
    cdef Py_ssize_t eol, line, colon, a, b, t, u, space1, space2
    cdef int status, keep, chunked = 0, has_length = 0, digit, head_only
    cdef int64_t length = 0, parsed
    eol = _find_crlf(p, 0, n)
    if eol < 0:
        eol = n
    # "HTTP/1.x SP status [SP reason]"
    space1 = 0
    while space1 < eol and p[space1] != 32:
        space1 += 1
    if space1 >= eol or space1 < 7 or not (
        p[0] == 72 and p[1] == 84 and p[2] == 84 and p[3] == 80 and p[4] == 47
        and p[5] == 49 and p[6] == 46
    ):
        return -1
    space2 = space1 + 1
    while space2 < eol and p[space2] != 32:
        space2 += 1
    if space2 - space1 - 1 != 3:
        return -1
    status = 0
    for a in range(space1 + 1, space2):
        digit = <unsigned char>p[a]
        if digit < 48 or digit > 57:
            return -1
        status = status * 10 + digit - 48
    if status < 100:
        return -1
    keep = space1 == 8 and p[7] == 49  # exactly HTTP/1.1
    line = eol + 2
    while line < n:
        eol = _find_crlf(p, line, n)
        if eol < 0:
            eol = n
        colon = line
        while colon < eol and p[colon] != 58:
            colon += 1
        if colon >= eol or colon == line or _space(<unsigned char>p[line]) or _space(
            <unsigned char>p[colon - 1]
        ):
            return -1
        a = colon + 1
        b = eol
        while a < b and _space(<unsigned char>p[a]):
            a += 1
        while b > a and _space(<unsigned char>p[b - 1]):
            b -= 1
        if _ieq(p + line, colon - line, b"content-length", 14):
            if b == a or b - a > 18:
                return -1
            parsed = 0
            for t in range(a, b):
                digit = <unsigned char>p[t]
                if digit < 48 or digit > 57:
                    return -1
                parsed = parsed * 10 + digit - 48
            if has_length and parsed != length:
                return -1
            length = parsed
            has_length = 1
        elif _ieq(p + line, colon - line, b"transfer-encoding", 17):
            chunked = b - a >= 7 and _ieq(p + b - 7, 7, b"chunked", 7)
        elif _ieq(p + line, colon - line, b"connection", 10):
            # comma-separated tokens: close wins over keep-alive
            t = a
            digit = 0  # 1: keep-alive seen, 2: close seen
            while t <= b:
                u = t
                while u < b and p[u] != 44:
                    u += 1
                a = t
                t = u + 1
                while a < u and _space(<unsigned char>p[a]):
                    a += 1
                while u > a and _space(<unsigned char>p[u - 1]):
                    u -= 1
                if _ieq(p + a, u - a, b"close", 5):
                    digit = 2
                elif digit == 0 and _ieq(p + a, u - a, b"keep-alive", 10):
                    digit = 1
            if digit == 2:
                keep = 0
            elif digit == 1:
                keep = 1
        line = eol + 2
    c.status = status
    c.keep = keep
    if status < 200:
        if status == 101:
            return -1
        c.pstate = P_HEAD
        return 0
    head_only = c.head_only
    c.head_only = 0
    if head_only or status == 204 or status == 304:
        c.pstate = P_HEAD
    elif chunked:
        c.pstate = P_CHUNK_SIZE
    elif has_length:
        c.remaining = length
        c.pstate = P_LENGTH if length else P_HEAD
    else:
        c.keep = 0
        c.pstate = P_UNTIL_CLOSE
    return 0


cdef class NativeParser:
    """The compiled parser with :class:`shoal.loadgen.http.ResponseParser`'s contract (for tests
    and comparisons: the engine runs the same functions on each connection's state)."""

    cdef Conn conn
    cdef bytes buffer
    cdef object expected
    cdef bint loaded

    def __cinit__(self):
        from collections import deque

        memset(&self.conn, 0, sizeof(Conn))
        self.conn.fd = -1
        self.conn.pstate = P_HEAD
        self.buffer = b""
        self.expected = deque()
        self.loaded = False

    def expect(self, bint head_only):
        """A request was sent; ``head_only``: its response has no body."""
        self.expected.append(head_only)

    def feed(self, bytes data):
        """The responses the bytes complete, as ``(status, keep_alive)``."""
        from shoal.loadgen.http import ResponseError

        cdef bytes buffer = self.buffer + data if self.buffer else data
        cdef Py_ssize_t position = 0
        cdef int result
        done = []
        while True:
            if not self.loaded:
                self.conn.head_only = self.expected.popleft() if self.expected else False
                self.loaded = True
            result = _next_response(&self.conn, buffer, len(buffer), &position)
            if result < 0:
                raise ResponseError("not a valid HTTP/1.x response")
            if result == 0:
                break
            self.loaded = False
            done.append((self.conn.status, bool(self.conn.keep)))
        self.buffer = buffer[position:]
        return done

    def feed_eof(self):
        """The server closed the connection: a body delimited by the close is complete."""
        if self.conn.pstate == P_UNTIL_CLOSE:
            self.conn.pstate = P_HEAD
            return [(self.conn.status, False)]
        return []
