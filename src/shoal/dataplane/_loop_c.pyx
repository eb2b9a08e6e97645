# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""
The compiled event loop of the HTTP proxy: the common exchange without asyncio's per-callback work.

Theory of operation
-------------------
An :class:`Engine` owns one epoll set, registered with the asyncio loop as a single reader: when
any of its sockets is ready, the loop calls :meth:`Engine._on_ready` once, which takes every ready
event (``epoll_wait`` with no wait) and handles it in C. Sockets are registered once, edge
triggered, for reading and writing; a ``readable`` flag remembers input that arrived while it
could not be taken.

It carries only the exchange every proxy carries most (the one :mod:`shoal.dataplane.fastpath`
recognises): a client's whole common request in one read goes to the dispatcher (the very
``Dispatcher.begin``/``end`` of the asyncio driver: routing, balancing, health and metrics are
theirs), to a pooled (or new) upstream connection as the received head with the forwarding fields
spliced in (one ``sendmsg``), and the upstream's common response head comes back rewritten by the
same scanner, its ``Content-Length`` body streamed as it arrives, with backpressure both ways.

Everything else is **handed over** to the asyncio driver (:mod:`shoal.dataplane.driver`), which
decides it exactly as for a connection it accepted itself: a read that is not one whole common
request (pipelined, partial, chunked, ``Upgrade``, ``Expect``, ``HEAD``, too large, malformed:
the driver answers 400, 413, 431...) hands over the client connection with the bytes read; a pick
queued behind a per-endpoint limit, or an address that is not numeric, hands over the exchange
before sending; a failed connect hands it over for ``Dispatcher.failed`` (another endpoint, or
502/504); a response head the scanner refuses (5xx, which the dispatcher may retry, 1xx, 204,
304, chunked, no length...) or an upstream that closes or resets before answering hands over the
exchange with both sockets and the bytes received. A connection handed over stays with the
asyncio driver until it closes.

Timeouts (idle keep-alive, upstream, connect) are checked by a sweep every ``tick`` seconds,
a quarter of the shortest one: a client idle too long is closed quietly; an exchange with no byte
from the upstream in ``upstream_timeout`` gets 504 (or is cut once its response started).
Draining (:meth:`Engine.drain`) stops accepting, closes idle clients, and closes the others after
their current response (``Connection: close``).
"""

import logging

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.errno cimport EAGAIN, EINTR, errno
from libc.stdint cimport uint32_t
from libc.stdlib cimport free, malloc
from libc.string cimport strerror

from shoal.dataplane._fastpath_c cimport scan_request_within, scan_response_c
from shoal.dataplane._fastpath_c import forwarding_tail
from shoal.dataplane.driver import (  # how an exchange is handed over (ProxyServer.adopt)
    ADOPT_CONNECT_FAILED,
    ADOPT_REQUEST,
    ADOPT_SEND,
    ADOPT_SENT,
)
from shoal.dataplane.proxy import error_response

cdef extern from *:
    """
    #include <arpa/inet.h>
    #include <netinet/in.h>
    #include <netinet/tcp.h>
    #include <sys/epoll.h>
    #include <sys/socket.h>
    #include <sys/uio.h>
    #include <time.h>
    #include <unistd.h>
    #include <errno.h>
    #include <string.h>

    static int shoal_accept(int lfd, char *peer, size_t peerlen) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        int one = 1;
        int fd = accept4(lfd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return -1;
        peer[0] = 0;
        if (ss.ss_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, peer, peerlen);
        else if (ss.ss_family == AF_INET6)
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, peer, peerlen);
        if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6)
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        return fd;
    }

    /* >= 0: a socket connecting (or connected); -1: failed at once (errno); -2: not numeric. */
    static int shoal_connect(const char *host, int port) {
        struct sockaddr_in a4;
        struct sockaddr_in6 a6;
        struct sockaddr *sa;
        socklen_t salen;
        int family, fd, one = 1;
        memset(&a4, 0, sizeof a4);
        memset(&a6, 0, sizeof a6);
        if (inet_pton(AF_INET, host, &a4.sin_addr) == 1) {
            a4.sin_family = AF_INET; a4.sin_port = htons((unsigned short)port);
            family = AF_INET; sa = (struct sockaddr *)&a4; salen = sizeof a4;
        } else if (inet_pton(AF_INET6, host, &a6.sin6_addr) == 1) {
            a6.sin6_family = AF_INET6; a6.sin6_port = htons((unsigned short)port);
            family = AF_INET6; sa = (struct sockaddr *)&a6; salen = sizeof a6;
        } else {
            return -2;
        }
        fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) return -1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(fd, sa, salen) < 0 && errno != EINPROGRESS) {
            int saved = errno;
            close(fd);
            errno = saved;
            return -1;
        }
        return fd;
    }

    static int shoal_socket_error(int fd) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) return errno;
        return err;
    }

    static void shoal_abort(int fd) {
        struct linger lg;
        lg.l_onoff = 1; lg.l_linger = 0;
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(fd);
    }

    static double shoal_now(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
    }

    static int shoal_watch(int ep, int fd, void *ptr) {
        struct epoll_event ev;
        ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
        ev.data.ptr = ptr;
        return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }

    static int shoal_watch_listener(int ep, int fd, void *ptr) {
        struct epoll_event ev;
        ev.events = EPOLLIN;
        ev.data.ptr = ptr;
        return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }

    static int shoal_unwatch(int ep, int fd) {
        struct epoll_event ev;
        return epoll_ctl(ep, EPOLL_CTL_DEL, fd, &ev);
    }

    static int shoal_wait(int ep, void **ptrs, unsigned int *events, int max) {
        struct epoll_event evs[256];
        int i, n;
        if (max > 256) max = 256;
        n = epoll_wait(ep, evs, max, 0);
        for (i = 0; i < n; i++) { ptrs[i] = evs[i].data.ptr; events[i] = evs[i].events; }
        return n;
    }

    /* One request upstream: head (up to its last CRLF), the connection's forwarding tail, body. */
    static ssize_t shoal_send3(int fd, const char *a, size_t an, const char *b, size_t bn,
                               const char *c, size_t cn) {
        struct iovec iov[3];
        struct msghdr msg;
        memset(&msg, 0, sizeof msg);
        iov[0].iov_base = (void *)a; iov[0].iov_len = an;
        iov[1].iov_base = (void *)b; iov[1].iov_len = bn;
        iov[2].iov_base = (void *)c; iov[2].iov_len = cn;
        msg.msg_iov = iov;
        msg.msg_iovlen = cn ? 3 : 2;
        return sendmsg(fd, &msg, MSG_NOSIGNAL);
    }

    static ssize_t shoal_send(int fd, const char *p, size_t n) {
        return send(fd, p, n, MSG_NOSIGNAL);
    }
    """
    int shoal_accept(int lfd, char* peer, size_t peerlen)
    int shoal_connect(const char* host, int port)
    int shoal_socket_error(int fd)
    void shoal_abort(int fd)
    double shoal_now()
    int shoal_watch(int ep, int fd, void* ptr)
    int shoal_watch_listener(int ep, int fd, void* ptr)
    int shoal_unwatch(int ep, int fd)
    int shoal_wait(int ep, void** ptrs, unsigned int* events, int max)
    ssize_t shoal_send3(int fd, const char* a, size_t an, const char* b, size_t bn, const char* c, size_t cn)
    ssize_t shoal_send(int fd, const char* p, size_t n)
    ssize_t recv(int fd, void* buf, size_t n, int flags)
    int close(int fd)
    int epoll_create1(int flags)
    enum:
        EPOLLIN
        EPOLLOUT
        EPOLLERR
        EPOLLHUP
        EPOLLRDHUP
        EPOLL_CLOEXEC

log = logging.getLogger("shoal.dataplane.proxy")  # the driver's own logger

cdef enum:
    BUFSIZE = 65536
    MAXEVENTS = 256
    POLL_ROUNDS = 4

# What a connection is.
cdef enum:
    K_LISTENER = 0
    K_CLIENT = 1
    K_UPSTREAM = 2

# A client connection's state.
cdef enum:
    C_IDLE = 0      # between requests
    C_WAIT = 1      # request taken; connecting, sending, or waiting for the response head
    C_STREAM = 2    # response head sent; its body still coming
    C_GONE = 3      # closed, or handed over

# An upstream connection's state.
cdef enum:
    U_IDLE = 0        # pooled
    U_CONNECTING = 1
    U_BUSY = 2
    U_GONE = 3




cdef class _IdleStack


cdef class _Conn:
    cdef int kind
    cdef int fd
    cdef bint readable


cdef class _Listener(_Conn):
    cdef object sock


cdef class _Upstream(_Conn):
    cdef int state
    cdef object address
    cdef double idle_since
    cdef _Client owner
    cdef bint reused
    cdef bint keep
    """The upstream allows reuse (no ``Connection: close``) and sent no byte too many."""
    cdef bytes pending
    """Request bytes the socket did not take yet."""
    cdef _Upstream prev
    cdef _Upstream next
    """Neighbours in the idle stack of its address (while pooled)."""
    cdef _IdleStack stack
    """The idle stack of its address."""


cdef class _IdleStack:
    """The pooled connections to one address, most recently used on top (a linked list: no
    list to grow and shrink on every request)."""

    cdef _Upstream head
    cdef long count

    cdef void push(self, _Upstream up):
        up.prev = None
        up.next = self.head
        if self.head is not None:
            self.head.prev = up
        self.head = up
        self.count += 1

    cdef _Upstream pop(self):
        cdef _Upstream up = self.head
        if up is None:
            return None
        self.head = up.next
        if self.head is not None:
            self.head.prev = None
        up.next = None
        self.count -= 1
        return up

    cdef void remove(self, _Upstream up):
        if up.prev is not None:
            up.prev.next = up.next
        elif self.head is up:
            self.head = up.next
        else:
            return  # not in this stack
        if up.next is not None:
            up.next.prev = up.prev
        up.prev = up.next = None
        self.count -= 1


cdef class _Client(_Conn):
    cdef int state
    cdef str peer
    cdef bytes tail
    cdef double since
    cdef double last
    cdef object request
    cdef object pick
    cdef bytes data
    cdef Py_ssize_t end
    cdef bint keep
    cdef bint eof
    cdef bint started
    cdef bint close_after
    cdef int status
    cdef _Upstream up
    cdef long long remaining
    cdef bytes out
    """Response bytes the client socket did not take yet."""

    cdef bytes head(self):
        """The upstream head (and body) as the asyncio driver would have written it."""
        data = self.data
        if self.end == PyBytes_GET_SIZE(data):
            return data[: self.end - 2] + self.tail
        return data[: self.end - 2] + self.tail + data[self.end :]


cdef class Engine:
    """The compiled loop of one :class:`~shoal.dataplane.driver.ProxyServer` (see the module)."""

    cdef int ep
    cdef object server
    cdef object loop
    cdef object begin
    cdef object end
    """The dispatcher's bound methods (no lookup by name per request)."""
    cdef Py_ssize_t max_head_size, max_headers
    cdef long long max_body
    cdef object pool
    cdef object live
    """Addresses whose connections may be pooled (None: any), as the pool's ``retain`` says."""
    cdef object timer
    cdef object scheme
    cdef bint xff
    cdef list listeners
    cdef set conns
    cdef list dead
    cdef list ended_picks
    cdef list ended_statuses
    """Exchanges answered in this batch whose picks end after it (see ``_finish``)."""
    cdef dict idle
    cdef dict tails
    cdef dict hosts
    cdef public long clients
    cdef public long opened
    cdef public long reused_count
    cdef bint draining
    cdef bint closed
    cdef double keepalive_timeout
    cdef double upstream_timeout
    cdef double connect_timeout
    cdef double idle_timeout
    cdef double tick
    cdef long max_idle
    cdef char* buf
    cdef void* ptrs[MAXEVENTS]
    cdef unsigned int evs[MAXEVENTS]

    def __cinit__(self):
        self.ep = -1
        self.buf = <char*>malloc(BUFSIZE)
        if self.buf == NULL:
            raise MemoryError()

    def __dealloc__(self):
        if self.buf != NULL:
            free(self.buf)
            self.buf = NULL
        if self.ep >= 0:
            close(self.ep)
            self.ep = -1

    def __init__(self, server, sockets, settings, pool):
        self.server = server
        self.begin = server.dispatcher.begin
        self.end = server.dispatcher.end
        limits = settings.limits
        self.max_head_size = limits.max_head_size
        self.max_headers = limits.max_headers
        self.max_body = -1 if limits.max_body_size is None else limits.max_body_size
        self.pool = pool
        self.live = None
        self.scheme = settings.forwarding.scheme
        self.xff = settings.forwarding.x_forwarded_for
        self.keepalive_timeout = settings.keepalive_timeout
        self.upstream_timeout = settings.upstream_timeout
        self.connect_timeout = settings.connect_timeout
        self.idle_timeout = settings.pool_idle_timeout
        self.max_idle = settings.pool_max_idle
        shortest = min(
            self.keepalive_timeout, self.upstream_timeout, self.connect_timeout, self.idle_timeout
        )
        self.tick = min(1.0, max(0.005, shortest / 4))
        self.conns = set()
        self.dead = []
        self.ended_picks = []
        self.ended_statuses = []
        self.idle = {}
        self.tails = {}
        self.hosts = {}
        self.listeners = []
        self.clients = 0
        self.opened = 0
        self.reused_count = 0
        self.draining = False
        self.closed = False
        self.ep = epoll_create1(EPOLL_CLOEXEC)
        if self.ep < 0:
            raise OSError(errno, strerror(errno).decode())
        cdef _Listener listener
        for sock in sockets:
            listener = _Listener()
            listener.kind = K_LISTENER
            listener.sock = sock
            listener.fd = sock.fileno()
            self.listeners.append(listener)

    # --- life cycle ---

    def start(self, loop):
        """Start accepting and serving on ``loop`` (the running asyncio loop)."""
        cdef _Listener listener
        self.loop = loop
        for listener in self.listeners:
            if shoal_watch_listener(self.ep, listener.fd, <void*>listener) < 0:
                raise OSError(errno, strerror(errno).decode())
        loop.add_reader(self.ep, self._on_ready)
        self.timer = loop.call_later(self.tick, self._sweep)

    @property
    def sockets(self):
        """The listening sockets."""
        return [(<_Listener>listener).sock for listener in self.listeners]

    def stop_accepting(self):
        """Close the listening sockets (connections already accepted carry on)."""
        cdef _Listener listener
        for listener in self.listeners:
            if listener.fd >= 0:
                shoal_unwatch(self.ep, listener.fd)
                listener.fd = -1
                listener.sock.close()

    def drain(self):
        """Stop accepting; close idle clients now and the others after their current response."""
        cdef _Conn conn
        cdef _Client client
        self.draining = True
        self.stop_accepting()
        for conn in list(self.conns):
            if conn.kind == K_CLIENT:
                client = <_Client>conn
                if client.state == C_IDLE:
                    if client.out is None:
                        self._close_client(client)
                    else:
                        client.close_after = True
        self._collect()

    def abort(self):
        """Cut every connection (the end of a drain's deadline)."""
        cdef _Conn conn
        for conn in list(self.conns):
            if conn.kind == K_CLIENT and (<_Client>conn).state != C_GONE:
                self._close_client(<_Client>conn, True)
        self._collect()

    def close(self):
        """Stop everything: listeners, idle upstream connections, the epoll set."""
        cdef _Conn conn
        if self.closed:
            return
        self.stop_accepting()
        self.abort()
        for conn in list(self.conns):
            if conn.kind == K_UPSTREAM:
                self._close_upstream(<_Upstream>conn)
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.loop is not None and self.ep >= 0:
            self.loop.remove_reader(self.ep)
        self._collect()
        if self.ep >= 0:
            close(self.ep)
            self.ep = -1

    def retain(self, live):
        """Pool connections only to ``live`` addresses (None: any); close the others' idle ones
        now and the busy ones when their exchange ends (an endpoint that left drains this way)."""
        self.live = live
        if live is None:
            return
        cdef _IdleStack stack
        cdef _Upstream up
        for address, stack in list(self.idle.items()):
            if address not in live:
                while stack.head is not None:
                    up = stack.pop()
                    self._close_upstream(up)
        self._collect()

    def idle_count(self, address=None):
        """Idle pooled upstream connections (to ``address``, or all)."""
        cdef _IdleStack stack
        if address is not None:
            stack = self.idle.get(address)
            return 0 if stack is None else stack.count
        return sum((<_IdleStack>stack).count for stack in self.idle.values())

    # --- events ---

    def _on_ready(self):
        cdef int n, i
        cdef _Conn conn
        cdef unsigned int ev
        if self.ep < 0:
            return
        n = shoal_wait(self.ep, self.ptrs, self.evs, MAXEVENTS)
        if n <= 0:
            return
        cdef double now = shoal_now()
        cdef int rounds = 0
        try:
            while True:
                for i in range(n):
                    conn = <_Conn>self.ptrs[i]
                    ev = self.evs[i]
                    if conn.fd < 0:
                        continue  # closed or handed over earlier in this batch
                    if conn.kind == K_CLIENT:
                        self._client_event(<_Client>conn, ev, now)
                    elif conn.kind == K_UPSTREAM:
                        self._upstream_event(<_Upstream>conn, ev, now)
                    else:
                        self._accept(<_Listener>conn, now)
                # What became ready while this batch ran (an upstream's answer to a request just
                # sent, often) is taken now rather than after a trip through the asyncio loop;
                # a few rounds at most, so the loop's own work is never held back for long.
                rounds += 1
                if rounds >= POLL_ROUNDS or self.ep < 0:
                    break
                self._collect()
                n = shoal_wait(self.ep, self.ptrs, self.evs, MAXEVENTS)
                if n <= 0:
                    break
                now = shoal_now()
        finally:
            self._collect()

    cdef void _collect(self):
        cdef Py_ssize_t i
        if self.ended_picks:
            picks, statuses = self.ended_picks, self.ended_statuses
            self.ended_picks, self.ended_statuses = [], []
            for i in range(len(picks)):
                try:
                    self.end(picks[i], statuses[i])
                except Exception:
                    log.exception("dispatcher failed at the end of an exchange")
        # Closed connections are kept until the batch ends: a later event may still point at them.
        if self.dead:
            self.dead = []
        if self.draining and self.clients == 0 and self.server is not None:
            self.server.engine_drained()

    cdef void _forget(self, _Conn conn):
        self.conns.discard(conn)
        self.dead.append(conn)
        conn.fd = -1

    cdef void _accept(self, _Listener listener, double now) except *:
        cdef char peer[64]
        cdef int fd, count = 0
        cdef _Client client
        while count < 64 and listener.fd >= 0:
            fd = shoal_accept(listener.fd, peer, 64)
            if fd < 0:
                if errno == EINTR:
                    continue
                return  # EAGAIN, or a transient error (EMFILE...): the listener stays watched
            count += 1
            client = _Client()
            client.kind = K_CLIENT
            client.fd = fd
            client.state = C_IDLE
            client.peer = (<char*>peer).decode("ascii") if peer[0] else "unknown"
            tail = self.tails.get(client.peer)
            if tail is None:
                tail = self.tails[client.peer] = forwarding_tail(client.peer, self.scheme, self.xff)
            client.tail = tail
            client.since = client.last = now
            if shoal_watch(self.ep, fd, <void*>client) < 0:
                close(fd)
                continue
            self.conns.add(client)
            self.clients += 1
            if self.draining:
                self._close_client(client)

    cdef void _client_event(self, _Client c, unsigned int ev, double now) except *:
        if ev & EPOLLERR:
            self._close_client(c, True)
            return
        if ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP):
            c.readable = True
            if ev & (EPOLLRDHUP | EPOLLHUP):
                c.eof = True
        if ev & EPOLLOUT and c.out is not None:
            if not self._flush_client(c):
                return
            if c.state == C_STREAM and c.up is not None and c.up.readable:
                self._read_upstream(c.up, now)
                if c.state == C_GONE:
                    return
        if c.state == C_IDLE and c.readable and c.out is None:
            self._read_client(c, now)

    cdef void _read_client(self, _Client c, double now) except *:
        cdef Py_ssize_t n
        while True:
            n = recv(c.fd, self.buf, BUFSIZE, 0)
            if n >= 0 or errno != EINTR:
                break
        if n < 0:
            if errno == EAGAIN:
                c.readable = False
                if c.eof:
                    self._close_client(c)
            else:
                self._close_client(c)
            return
        if n == 0:
            self._close_client(c)
            return
        data = PyBytes_FromStringAndSize(self.buf, n)
        c.readable = n == BUFSIZE
        c.last = now
        if n == BUFSIZE or self.buf[0] == b'H':
            # More may follow (the driver reads on), or HEAD (the response's length describes
            # no body; the only method the scanner takes that starts with H).
            self._handover_request(c, data)
            return
        scanned = scan_request_within(data, self.max_head_size, self.max_headers, self.max_body)
        if scanned is None:
            self._handover_request(c, data)
            return
        request, end = scanned
        try:
            pick = self.begin(request, c.peer)
        except Exception:
            log.exception("route failed for %r", request.target)
            self._local(c, 500, "routing failed")
            return
        if pick is None:
            self._local(c, 503, "no upstream available")
            return
        c.request = request
        c.pick = pick
        c.data = data
        c.end = end
        c.status = 0
        c.started = False
        c.keep = not self.draining  # the scanner takes only HTTP/1.1 without Connection
        c.state = C_WAIT
        c.since = now
        if pick.queued:
            self._handover_exchange(c, ADOPT_SEND)
            return
        self._send_request(c, pick.address, now)

    cdef void _send_request(self, _Client c, object address, double now) except *:
        cdef _Upstream up = self._take(address, now)
        cdef int fd, err
        if up is None:
            target = self.hosts.get(address)
            if target is None:
                target = self.hosts[address] = (str(address[0]).encode("utf-8"), int(address[1]))
            fd = shoal_connect(<bytes>target[0], <int>target[1])
            if fd == -2:
                self._handover_exchange(c, ADOPT_SEND)  # a name to resolve: the driver does
                return
            if fd < 0:
                err = errno
                self._connect_failed(c, err, False)
                return
            up = _Upstream()
            up.kind = K_UPSTREAM
            up.fd = fd
            up.address = address
            up.state = U_CONNECTING
            up.reused = False
            if shoal_watch(self.ep, fd, <void*>up) < 0:
                err = errno
                close(fd)
                self._connect_failed(c, err, False)
                return
            self.conns.add(up)
            self.opened += 1
        up.owner = c
        up.keep = True
        c.up = up
        if up.state == U_BUSY:
            self._write_request(c, up)
        # else: connecting; the request goes when the socket is writable

    cdef _Upstream _take(self, object address, double now):
        cdef _IdleStack stack = self.idle.get(address)
        cdef _Upstream up
        if stack is None:
            return None
        while stack.head is not None:
            up = stack.pop()
            if up.state == U_IDLE and now - up.idle_since < self.idle_timeout:
                up.state = U_BUSY
                up.reused = True
                self.reused_count += 1
                return up
            self._close_upstream(up)
        return None

    cdef void _write_request(self, _Client c, _Upstream up) except *:
        data = c.data
        cdef const char* p = PyBytes_AS_STRING(data)
        cdef Py_ssize_t size = PyBytes_GET_SIZE(data)
        cdef Py_ssize_t head = c.end - 2
        tail = c.tail
        cdef Py_ssize_t tail_size = PyBytes_GET_SIZE(tail)
        cdef Py_ssize_t total = size + tail_size - 2
        cdef Py_ssize_t n
        while True:
            n = shoal_send3(up.fd, p, head, PyBytes_AS_STRING(tail), tail_size, p + c.end, size - c.end)
            if n >= 0 or errno != EINTR:
                break
        if n == total:
            return
        if n < 0 and errno != EAGAIN:
            self._handover_exchange(c, ADOPT_SENT, None, True)  # closed under us: the driver retries
            return
        whole = c.head()
        up.pending = whole[n if n > 0 else 0 :]

    cdef void _flush_request(self, _Upstream up) except *:
        pending = up.pending
        cdef Py_ssize_t n = shoal_send(up.fd, PyBytes_AS_STRING(pending), PyBytes_GET_SIZE(pending))
        if n == PyBytes_GET_SIZE(pending):
            up.pending = None
        elif n >= 0:
            up.pending = pending[n:]
        elif errno != EAGAIN and errno != EINTR:
            up.pending = None
            if up.owner is not None:
                self._handover_exchange(up.owner, ADOPT_SENT, None, True)

    cdef void _connect_failed(self, _Client c, int err, bint timeout) except *:
        c.up = None
        self._handover_exchange(c, ADOPT_CONNECT_FAILED, None, False, timeout, strerror(err).decode())

    cdef void _upstream_event(self, _Upstream up, unsigned int ev, double now) except *:
        cdef int err
        cdef _Client c
        if up.state == U_IDLE:
            self._drop_idle(up)  # an idle connection has nothing to say: closed, or broken
            return
        c = up.owner
        if c is None:
            self._close_upstream(up)
            return
        if up.state == U_CONNECTING:
            if not ev & (EPOLLOUT | EPOLLERR | EPOLLHUP):
                return
            err = shoal_socket_error(up.fd)
            if err:
                self._close_upstream(up)
                self._connect_failed(c, err, False)
                return
            up.state = U_BUSY
            self._write_request(c, up)
            if c.state != C_WAIT or c.up is not up:
                return
        elif ev & EPOLLOUT and up.pending is not None:
            self._flush_request(up)
            if c.up is not up:
                return
        if ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR):
            up.readable = True
            if ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR):
                up.keep = False  # closing its side: not a connection to pool
        if up.readable:
            self._read_upstream(up, now)

    cdef void _read_upstream(self, _Upstream up, double now) except *:
        cdef _Client c = up.owner
        cdef Py_ssize_t n, m
        cdef long long rest
        while up.readable and c is not None and c.up is up and c.out is None:
            while True:
                n = recv(up.fd, self.buf, BUFSIZE, 0)
                if n >= 0 or errno != EINTR:
                    break
            if n < 0 and errno == EAGAIN:
                up.readable = False
                return
            if n > 0 and n < BUFSIZE:
                up.readable = False
            if c.state == C_WAIT:
                if n <= 0 or up.pending is not None:
                    # Closed before answering (or answering before taking the whole request):
                    # the driver retries, or answers 502, as for its own connections.
                    data = PyBytes_FromStringAndSize(self.buf, n) if n > 0 else None
                    self._handover_exchange(c, ADOPT_SENT, data, n <= 0)
                    return
                c.last = now
                data = PyBytes_FromStringAndSize(self.buf, n)
                keep = c.keep and not self.draining
                scanned = scan_response_c(data, keep)
                if scanned is None:
                    self._handover_exchange(c, ADOPT_SENT, data, False)
                    return
                status, out, rest, upstream_keep = scanned
                c.keep = keep
                c.status = status
                c.started = True
                up.keep = up.keep and upstream_keep
                if not self._write_client(c, PyBytes_AS_STRING(out), PyBytes_GET_SIZE(out)):
                    return
                if rest == 0:
                    self._finish(c, now)
                    return
                c.state = C_STREAM
                c.remaining = rest
                continue
            # C_STREAM: the rest of a Content-Length body, as it comes.
            if n <= 0:
                self._close_client(c, True)  # cut short: the client must not take it whole
                return
            c.last = now
            m = n
            if m > c.remaining:
                m = <Py_ssize_t>c.remaining
                up.keep = False  # bytes beyond the body: not a connection to reuse
            c.remaining -= m
            if not self._write_client(c, self.buf, m):
                return
            if c.remaining == 0:
                self._finish(c, now)
                return

    # --- writing to clients ---

    cdef bint _write_client(self, _Client c, const char* p, Py_ssize_t size) except -1:
        """Send ``size`` bytes at ``p``; keep a copy of what the socket did not take. False: the
        client is gone."""
        cdef Py_ssize_t n
        while True:
            n = shoal_send(c.fd, p, size)
            if n >= 0 or errno != EINTR:
                break
        if n == size:
            return True
        if n < 0 and errno != EAGAIN:
            self._close_client(c, True)
            return False
        if n < 0:
            n = 0
        c.out = PyBytes_FromStringAndSize(p + n, size - n)
        return True

    cdef bint _flush_client(self, _Client c) except -1:
        """Send held response bytes; True when nothing is held any more."""
        out = c.out
        cdef Py_ssize_t size = PyBytes_GET_SIZE(out)
        cdef Py_ssize_t n = shoal_send(c.fd, PyBytes_AS_STRING(out), size)
        if n == size:
            c.out = None
            if c.close_after:
                self._close_client(c)
                return False
            return True
        if n < 0:
            if errno == EAGAIN or errno == EINTR:
                return False
            self._close_client(c, True)
            return False
        c.out = out[n:]
        return False

    # --- ends ---

    cdef void _finish(self, _Client c, double now) except *:
        """The response has ended: reuse or close the upstream, end the pick, next request."""
        cdef _Upstream up = c.up
        c.up = None
        if up is not None:
            up.owner = None
            if up.keep and up.pending is None:
                self._release(up, now)
            else:
                self._close_upstream(up)
        # The pick ends after this batch: the dispatcher's bookkeeping (counters, histograms,
        # health, balancing state) then runs after every read and write the batch had to do, not
        # between them, so a burst of requests is forwarded and answered sooner. Each pick still
        # ends exactly once, within this callback.
        if c.pick is not None:
            self.ended_picks.append(c.pick)
            self.ended_statuses.append(c.status)
            c.pick = None
        c.request = None
        c.data = None
        if not c.keep or self.draining or c.eof:
            if c.out is None:
                self._close_client(c)
            else:
                c.close_after = True
                c.state = C_IDLE
            return
        c.state = C_IDLE
        c.since = now
        if c.readable and c.out is None:
            self._read_client(c, now)  # the next request may have come meanwhile

    cdef void _end_pick(self, _Client c, int status) except *:
        pick = c.pick
        if pick is None:
            return
        c.pick = None
        try:
            self.end(pick, status)
        except Exception:
            log.exception("dispatcher failed at the end of an exchange")

    cdef void _release(self, _Upstream up, double now) except *:
        address = up.address
        cdef _IdleStack stack = up.stack
        if stack is None:
            stack = self.idle.get(address)
            if stack is None:
                stack = self.idle[address] = _IdleStack()
            up.stack = stack
        live = self.live
        if (
            self.closed
            or stack.count >= self.max_idle
            or (live is not None and address not in live)
        ):
            self._close_upstream(up)
            return
        up.state = U_IDLE
        up.idle_since = now
        up.readable = False
        stack.push(up)

    cdef void _drop_idle(self, _Upstream up) except *:
        if up.stack is not None:
            up.stack.remove(up)
        self._close_upstream(up)

    cdef void _close_upstream(self, _Upstream up) except *:
        if up.state == U_GONE:
            return
        up.state = U_GONE
        up.owner = None
        if up.fd >= 0:
            close(up.fd)
        self._forget(up)

    cdef void _close_client(self, _Client c, bint abort=False) except *:
        """Close the client connection (``abort``: cut it, a broken exchange or a client gone);
        its upstream connection, if any, is closed and its pick ended."""
        if c.state == C_GONE:
            return
        if c.up is not None:
            self._close_upstream(c.up)
            c.up = None
        self._end_pick(c, c.status if c.started else 0)
        c.state = C_GONE
        if abort:
            shoal_abort(c.fd)
        else:
            close(c.fd)
        self.clients -= 1
        self._forget(c)

    cdef void _local(self, _Client c, int status, str detail) except *:
        """Answer ``status`` ourselves and close, as the driver's ``_local_response``."""
        if status >= 500:
            log.info("%s %s: %s", c.peer, status, detail)
        if c.up is not None:
            self._close_upstream(c.up)
            c.up = None
        out = error_response(status, detail)
        self._end_pick(c, status)
        c.started = True
        c.status = status
        if self._write_client(c, PyBytes_AS_STRING(out), PyBytes_GET_SIZE(out)):
            if c.out is None:
                self._close_client(c)
            else:
                c.close_after = True
                c.state = C_IDLE

    # --- handing over to the asyncio driver ---

    cdef int _release_fd(self, _Conn conn) except? -2:
        """Stop watching ``conn``; its descriptor now belongs to the caller."""
        cdef int fd = conn.fd
        shoal_unwatch(self.ep, fd)
        self._forget(conn)
        return fd

    cdef void _handover_request(self, _Client c, bytes data) except *:
        c.state = C_GONE
        self.clients -= 1
        fd = self._release_fd(c)
        self.server.adopt(fd, ADOPT_REQUEST, data)

    cdef void _handover_exchange(
        self, _Client c, int stage, object data=None, bint lost=False, bint timeout=False,
        str detail=""
    ) except *:
        cdef _Upstream up = c.up
        cdef int up_fd = -1
        c.up = None
        unsent = b""
        reused = False
        if up is not None:
            reused = up.reused
            if up.pending is not None:
                unsent = up.pending
                up.pending = None
            up.state = U_GONE
            up.owner = None
            if lost:
                close(up.fd)
                self._forget(up)
            else:
                up_fd = self._release_fd(up)
        head = c.head()
        request, pick = c.request, c.pick
        c.request = c.pick = c.data = None
        c.state = C_GONE
        self.clients -= 1
        fd = self._release_fd(c)
        self.server.adopt(
            fd,
            stage,
            data or b"",
            request,
            pick,
            head,
            up_fd,
            reused,
            unsent,
            lost,
            timeout,
            detail,
        )

    # --- timers ---

    def _sweep(self):
        cdef double now = shoal_now()
        cdef _Conn conn
        cdef _Client c
        cdef _Upstream up
        cdef double since
        self.timer = None
        if self.closed:
            return
        try:
            for conn in list(self.conns):
                if conn.fd < 0:
                    continue
                if conn.kind == K_UPSTREAM:
                    up = <_Upstream>conn
                    if up.state == U_IDLE and now - up.idle_since >= self.idle_timeout:
                        self._drop_idle(up)
                    continue
                c = <_Client>conn
                if c.state == C_IDLE:
                    if now - c.since >= self.keepalive_timeout and c.out is None:
                        self._close_client(c)
                elif c.state == C_WAIT and c.up is not None and c.up.state == U_CONNECTING:
                    if now - c.since >= self.connect_timeout:
                        up = c.up
                        c.up = None
                        self._close_upstream(up)
                        self._handover_exchange(
                            c, ADOPT_CONNECT_FAILED, None, False, True, "timed out"
                        )
                elif c.state == C_WAIT or c.state == C_STREAM:
                    since = c.since if c.since > c.last else c.last
                    if now - since >= self.upstream_timeout:
                        if c.started:
                            self._close_client(c, True)
                        else:
                            self._local(c, 504, "the upstream did not answer in time")
        finally:
            self._collect()
            if not self.closed and self.loop is not None:
                self.timer = self.loop.call_later(self.tick, self._sweep)
