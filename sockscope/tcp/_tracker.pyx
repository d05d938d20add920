# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled TCP connection tracker.

Theory of operation
-------------------
`Tracker.run(source)` pulls decoded packets from a `PacketSource` and keeps one `Conn`
per connection (4-tuple + SYN epoch). Everything a packet changes is C-level state on
the `Conn`; no Python object is created per packet except when payload bytes are handed
to an application-layer consumer (HTTP), which works on reassembled streams.

Per direction ("side", 0 = sender of the connection's first packet, 1 = the other) the
tracker keeps Zeek-compatible endpoint state (INACTIVE, SYN_SENT, ... RESET), relative
sequence numbers unwrapped to 64 bits, the highest sequence seen and acked (for payload
byte counts that count retransmissions once and include data the capture missed), and
stream coverage: the next expected byte plus a short list of out-of-order islands.
Coverage decides what is *new* data (activity for idle measurement; retransmissions and
keep-alive probes are not), what is a hole (missed bytes, reported when the receiver
acknowledges past it), and what bytes reach the HTTP layer in order.

Roles: the client is the sender of a bare SYN, else the receiver of a SYN-ACK, else a
heuristic (first payload that looks like a request, then port numbers).

A connection is *retired* (finalised into a compact row and forgotten) once both sides
closed or one reset and it has been quiet for `linger` seconds, so memory follows the
number of open connections, not the number of packets.
"""

from libc.stdint cimport uint8_t, uint16_t, uint32_t, int32_t, int64_t, uint64_t
from libc.string cimport memcpy, memcmp
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from cpython.ref cimport PyObject, Py_INCREF, Py_XDECREF
from libc.stdlib cimport calloc, free

from sockscope.capture._source cimport PacketSource, Pkt, PKT_TCP

DEF BASE = 1 << 40          # relative sequence origin: keeps unwrapped values positive
DEF TOO_LARGE_DELTA = 1048576

# Zeek endpoint states
DEF INACTIVE = 0
DEF SYN_SENT = 1
DEF SYN_ACK_SENT = 2
DEF PARTIAL = 3
DEF ESTABLISHED = 4
DEF CLOSED = 5
DEF RESET = 6

# history flag bits (letters that appear once per side, or repeat by rule)
DEF H_SYN = 1
DEF H_FIN = 2
DEF H_RST = 4
DEF H_DATA = 8
DEF H_ACK = 16
DEF H_I = 32
DEF H_Q = 64

DEF F_FIN = 0x01
DEF F_SYN = 0x02
DEF F_RST = 0x04
DEF F_ACK = 0x10

DEF MAX_ISLANDS = 64
DEF MAX_ISLAND_BYTES = 4 * 1024 * 1024
DEF HEAD_MAX = 16384

# gap / close event codes (index into GAP_ENDED_BY)
GAP_ENDED_BY = ("client_data", "server_data", "client_fin", "client_rst", "server_fin",
                "server_rst", "capture_end")

HTTP_METHODS = (b"GET ", b"POST ", b"PUT ", b"HEAD ", b"DELETE ", b"OPTIONS ", b"PATCH ",
                b"CONNECT ", b"TRACE ")


cdef struct Side:
    int64_t pkts
    int64_t ip_bytes
    bint seq_init
    uint32_t ref_seq
    int64_t ref_rel
    int64_t start
    int64_t last_end
    int64_t ack_max
    int state
    int prev_state
    bint did_close
    int fin_cnt
    int64_t fin_pos          # stream position of the FIN (end of data)
    int hflags
    int64_t h_syn
    int64_t h_fin
    int64_t h_rst
    int64_t n_rxmit
    int64_t n_zero
    int64_t n_gap
    int64_t next_rel         # first stream byte not yet seen in order
    int64_t missed
    int64_t new_bytes        # payload bytes that were new (not retransmitted)
    int64_t fin_ts
    int64_t fin_frame
    int64_t rst_ts
    int64_t rst_frame
    int64_t syn_rel          # relative seq of this side's SYN, -1 if none
    # What a forged RST gives away: the IP TTL / hop limit of this side's own packets (not
    # its RSTs), the IP-ID of its last one, and those of its first RST.
    int ttl_min              # 256 when none yet
    int ttl_max              # -1 when none yet
    int32_t ipid_last        # -2 when none yet (-1: IPv6)
    int rst_ttl
    int32_t rst_ipid
    int32_t ipid_before_rst  # ipid_last when the first RST came
    # Data this side sent that the peer has not acknowledged (a silent drop): when the
    # current unacknowledged flight began (-1: none), and its retransmissions.
    int64_t flight_ts
    int64_t flight_frame
    int64_t flight_rexmit
    int64_t unseen_acked     # bytes the peer acknowledged that no captured packet carried
    int64_t unseen_ts        # when the last of them beyond a FIN's one was acknowledged (0: none)
    bint seq_from_ack        # sequence space learned from the peer's ACK, before a packet of its own
    int64_t fin_seen_by_ack  # frame of the peer's ACK of this side's FIN, never captured, when that
                             # ACK is the connection's close (0: none; set only with the close)
    int64_t fin_seen_at      # the sequence number that ACK reached
    bint rebased             # ... and re-based at its first packet, as Zeek does (size only)
    int64_t size_base        # Zeek's start for the size of a re-based endpoint
    int64_t size_ack         # the peer's highest ACK since the re-base
    int64_t flight_ack0      # the peer's highest ACK of this side when the flight began:
                             # ACKs beyond it acknowledged part of the flight
    int64_t last_pkt_ts      # this side's last packet of any kind
    # the last packet's identity, to tell a second copy of it (two mirror sessions, ingress
    # and egress, deliver every packet twice) from a retransmission
    uint32_t last_seq
    uint32_t last_ack
    uint16_t last_flags
    uint16_t last_win
    int32_t last_len
    int32_t last_id
    # A zero-window stall this side is advertising (-1: none open), and the peer's window
    # probes during it; a run of this side's keep-alive probes the peer has not answered yet.
    int64_t zw_ts
    int64_t zw_frame
    int64_t zw_probes
    int64_t ka_ts
    int64_t ka_frame
    int64_t ka_n
    int64_t ka_last_ts
    int64_t ka_last_frame
    int64_t ka_quiet_ns      # the peer's silence before the first probe (-1: peer never seen)


DEF DUP_WINDOW_NS = 5_000_000     # copies of one packet arrive within this of each other
DEF STALL_FLOOR_NS = 200_000_000  # zero-window stalls that ended sooner are not kept
DEF MAX_STALLS = 64               # per connection (a receiver that stalls all the time: its first ones)


cdef inline void add_stall(Conn c, int kind, int d, int64_t s_ts, int64_t s_frame, int64_t e_ts, int64_t e_frame,
                           int64_t probes, bint resolved, int64_t quiet_ns):
    # kind 0: side d advertised a zero window; kind 1: side d's keep-alive probes went unanswered
    if c.stalls is None:
        c.stalls = []
    if len(c.stalls) < MAX_STALLS:
        c.stalls.append((kind, d, s_ts, s_frame, e_ts, e_frame, probes, resolved, quiet_ns))


cdef inline int64_t unwrap(Side* s, uint32_t seq) noexcept nogil:
    return s.ref_rel + <int32_t>(seq - s.ref_seq)


cdef inline bint log_step(int64_t n) noexcept nogil:
    # Zeek writes a counted letter at the 1st, 10th, 100th ... occurrence.
    while n >= 10 and n % 10 == 0:
        n //= 10
    return n == 1


cdef class Conn:
    cdef public int64_t conn_id
    cdef uint8_t af
    cdef uint8_t addr[2][16]
    cdef uint16_t port[2]
    cdef Side s[2]
    cdef public int client
    cdef bint roles_syn
    cdef bint roles_final
    cdef int64_t first_ts
    cdef int64_t last_ts          # Zeek's: packets after both sides closed don't extend it
    cdef int64_t seen_ts          # truly last packet
    cdef int64_t first_frame
    cdef int64_t last_frame
    cdef bytearray hist
    cdef int close_side
    cdef int close_kind           # 0 none, 1 FIN, 2 RST
    cdef int64_t close_ts
    cdef int64_t close_frame
    cdef int64_t idle_close_ns    # -1: no payload before the close
    cdef int64_t last_pay_ts
    cdef int64_t last_pay_frame
    cdef int last_pay_side
    cdef int64_t mark_ts
    cdef int64_t mark_frame
    cdef int mark_code
    cdef list gaps
    cdef list stalls              # zero-window stalls and unanswered keep-alive runs (rare: None)
    cdef int64_t late_pkts
    cdef int64_t retx             # payload segments that carried no new byte (keep-alive probes excluded)
    cdef int64_t late_bytes
    cdef int64_t late_ts
    cdef int64_t late_frame
    cdef int late_side
    cdef int64_t late_rst_ts      # the first RST that answered the data after the close
    cdef int64_t late_rst_frame
    cdef list islands0
    cdef list islands1
    cdef int64_t island_bytes[2]
    # application layer
    cdef object session
    cdef int proto                # 0 undecided, 1 http, 2 tls, 3 unknown
    cdef object sni
    cdef list heads               # [(side, bytes, ts, frame), ...] until the protocol is known
    cdef int64_t head_len[2]
    cdef Conn chain
    cdef bint retired
    # Both sides closed with a FIN and every byte up to them was delivered: the application
    # layer was handed to the row store then (Tracker.release_app), not after the linger.
    cdef bint app_released
    cdef int64_t app_requests
    cdef int64_t app_unanswered
    cdef int64_t app_waiting_since    # the first unanswered request's end, NA if none
    cdef uint8_t tun_kind         # the tunnel its first packet came in (capture TUN_*), 0: none
    cdef uint32_t tun_id

    cdef bint same_key(self, Pkt* p):
        if p.af != self.af:
            return False
        if p.sport == self.port[0] and p.dport == self.port[1] and \
                memcmp(p.src, self.addr[0], 16) == 0 and memcmp(p.dst, self.addr[1], 16) == 0:
            return True
        return p.sport == self.port[1] and p.dport == self.port[0] and \
            memcmp(p.src, self.addr[1], 16) == 0 and memcmp(p.dst, self.addr[0], 16) == 0

    cdef int side_of(self, Pkt* p):
        if p.sport == self.port[0] and memcmp(p.src, self.addr[0], 16) == 0 and \
                (p.sport != p.dport or memcmp(p.dst, self.addr[1], 16) == 0):
            return 0
        return 1


cdef inline void hist_add(Conn c, int side, char letter):
    c.hist.append((<uint8_t>letter) | (0x80 if side else 0))


cdef bint is_ephemeral(uint16_t port):
    return port >= 32768


cdef int server_side_by_ports(uint16_t p0, uint16_t p1):
    """Which side (0/1) looks like the server from its port alone; -1 if no idea."""
    if p0 < 1024 and p1 >= 1024:
        return 0
    if p1 < 1024 and p0 >= 1024:
        return 1
    if is_ephemeral(p0) and not is_ephemeral(p1):
        return 1
    if is_ephemeral(p1) and not is_ephemeral(p0):
        return 0
    return -1


cdef int content_role(const uint8_t* d, int n):
    """1 if these first bytes are a client's (request / ClientHello), 2 if a server's, 0 unknown."""
    cdef int i
    if n >= 5 and d[0] == b'H' and d[1] == b'T' and d[2] == b'T' and d[3] == b'P' and d[4] == b'/':
        return 2
    if n >= 6 and d[0] == 0x16 and d[1] == 3 and d[5] == 1:
        return 1
    if n >= 6 and d[0] == 0x16 and d[1] == 3 and d[5] == 2:
        return 2
    # An upper-case token followed by a space and '/' is a request line.
    i = 0
    while i < n and i < 16 and (b'A' <= d[i] <= b'Z' or d[i] == b'_' or d[i] == b'-'):
        i += 1
    if 2 < i < 16 and i + 1 < n and d[i] == b' ' and (d[i + 1] == b'/' or d[i + 1] == b'*' or
                                                      (i + 4 < n and d[i + 1] == b'h')):
        return 1
    return 0


# Flow shards (-j, dask) are ranges of the hash's top 12 bits: apart from the bits the
# open-connection table indexes by, so a shard's flows still fill the whole table; and
# ranges, so a shard can be given a larger or smaller part of the flows.
cdef enum:
    N_BUCKETS = 4096
    BUCKET_SHIFT = 50       # hashes are 62-bit: the top 12 bits
SHARD_BUCKETS = N_BUCKETS
cdef uint64_t TOP_BIT = (<uint64_t>1) << 63     # marks a used slot (hashes are 62-bit)


cdef inline uint64_t _mix64(uint64_t x) noexcept nogil:
    # splitmix64's finaliser: every input bit moves every output bit
    x ^= x >> 30
    x *= 0xBF58476D1CE4E5B9ULL
    x ^= x >> 27
    x *= 0x94D049BB133111EBULL
    x ^= x >> 31
    return x


cdef class Tracker:
    """Turn decoded packets into connection rows (and feed HTTP sessions)."""

    # Open connections by 4-tuple hash: an open-addressing table (linear probing) of
    # (hash | TOP, Conn) owned references; connections whose 4-tuples share a hash hang off
    # Conn.chain. A dict cost a Python int per packet to look a connection up.
    cdef uint64_t* tkeys          # 0: empty slot
    cdef PyObject** tvals
    cdef Py_ssize_t tcap
    cdef Py_ssize_t tcount
    cdef list open_conns
    cdef public int64_t next_id
    cdef public int64_t gap_floor_ns
    cdef public int64_t linger_ns
    cdef public bint l7
    cdef public object session_factory
    cdef public object detect
    cdef public object sink        # called with each retired Conn's row dict-like
    cdef public object on_close    # live mode: called at each connection's first FIN/RST
    cdef public int64_t capture_first_ts
    cdef public int64_t capture_last_ts
    cdef public int64_t packets
    cdef public int64_t tcp_packets
    cdef public int64_t max_open
    cdef public int64_t evicted
    cdef public int64_t ooo_bytes       # out-of-order payload held, all connections
    cdef public int64_t max_ooo_bytes
    cdef public int64_t ooo_flushes     # times the total cap made a direction give up its islands
    cdef public int64_t duplicates      # second copies of a packet (mirror sessions): not retransmissions
    cdef public int shard_lo      # this tracker's flows: hash bucket in [lo, hi)
    cdef public int shard_hi
    cdef public int64_t sweep_every_ns   # also sweep (and report progress) this often in capture time; 0: off

    def __init__(self, sink, *, double min_gap_s=1.0, double linger_s=5.0, bint l7=True,
                 session_factory=None, detect=None, int64_t max_open=100_000,
                 int64_t max_ooo_bytes=256 * 1024 * 1024):
        self.tcap = 1024
        self.tcount = 0
        self.tkeys = <uint64_t*>calloc(self.tcap, sizeof(uint64_t))
        self.tvals = <PyObject**>calloc(self.tcap, sizeof(PyObject*))
        if self.tkeys == NULL or self.tvals == NULL:
            raise MemoryError()
        self.open_conns = []
        self.next_id = 0
        self.gap_floor_ns = <int64_t>(min_gap_s * 1e9)
        self.linger_ns = <int64_t>(linger_s * 1e9)
        self.l7 = l7 and session_factory is not None
        self.session_factory = session_factory
        self.detect = detect
        self.sink = sink
        self.capture_first_ts = -1
        self.capture_last_ts = -1
        self.packets = 0
        self.tcp_packets = 0
        self.max_open = max_open
        self.max_ooo_bytes = max_ooo_bytes
        self.evicted = 0
        self.shard_lo = 0
        self.shard_hi = N_BUCKETS
        self.sweep_every_ns = 0
        self.on_close = None

    def __dealloc__(self):
        cdef Py_ssize_t i
        if self.tvals != NULL:
            for i in range(self.tcap):
                Py_XDECREF(self.tvals[i])
        free(self.tkeys)
        free(self.tvals)

    # -- table ----------------------------------------------------------------------------
    cdef Conn tget(self, uint64_t h):
        cdef uint64_t k = h | TOP_BIT
        cdef Py_ssize_t mask = self.tcap - 1
        cdef Py_ssize_t i = <Py_ssize_t>(h & <uint64_t>mask)
        while self.tkeys[i]:
            if self.tkeys[i] == k:
                return <Conn>self.tvals[i]
            i = (i + 1) & mask
        return None

    cdef int tset(self, uint64_t h, Conn c) except -1:
        """Map h to c (replacing what h mapped to)."""
        cdef uint64_t k = h | TOP_BIT
        cdef Py_ssize_t mask, i
        if (self.tcount + 1) * 4 > self.tcap * 3:
            self.tgrow()
        mask = self.tcap - 1
        i = <Py_ssize_t>(h & <uint64_t>mask)
        while self.tkeys[i]:
            if self.tkeys[i] == k:
                Py_INCREF(c)
                Py_XDECREF(self.tvals[i])
                self.tvals[i] = <PyObject*>c
                return 0
            i = (i + 1) & mask
        Py_INCREF(c)
        self.tkeys[i] = k
        self.tvals[i] = <PyObject*>c
        self.tcount += 1
        return 0

    cdef int tgrow(self) except -1:
        cdef Py_ssize_t cap = self.tcap * 2, mask = cap - 1, i, j
        cdef uint64_t* keys = <uint64_t*>calloc(cap, sizeof(uint64_t))
        cdef PyObject** vals = <PyObject**>calloc(cap, sizeof(PyObject*))
        if keys == NULL or vals == NULL:
            free(keys)
            free(vals)
            raise MemoryError()
        for i in range(self.tcap):
            if self.tkeys[i]:
                j = <Py_ssize_t>(self.tkeys[i] & <uint64_t>mask)
                while keys[j]:
                    j = (j + 1) & mask
                keys[j] = self.tkeys[i]
                vals[j] = self.tvals[i]     # the reference moves with it
        free(self.tkeys)
        free(self.tvals)
        self.tkeys = keys
        self.tvals = vals
        self.tcap = cap
        return 0

    cdef void tdel(self, uint64_t h):
        """Forget h (backward-shift deletion: no tombstones, probe runs stay short)."""
        cdef uint64_t k = h | TOP_BIT
        cdef Py_ssize_t mask = self.tcap - 1
        cdef Py_ssize_t i = <Py_ssize_t>(h & <uint64_t>mask), j, home
        while self.tkeys[i] != k:
            if not self.tkeys[i]:
                return
            i = (i + 1) & mask
        Py_XDECREF(self.tvals[i])
        self.tkeys[i] = 0
        self.tvals[i] = NULL
        self.tcount -= 1
        j = i
        while True:
            j = (j + 1) & mask
            if not self.tkeys[j]:
                return
            home = <Py_ssize_t>(self.tkeys[j] & <uint64_t>mask)
            # the entry at j may fill the hole at i if its probe run from home passes i
            if (j > i and (home <= i or home > j)) or (j < i and home <= i and home > j):
                self.tkeys[i] = self.tkeys[j]
                self.tvals[i] = self.tvals[j]
                self.tkeys[j] = 0
                self.tvals[j] = NULL
                i = j

    cdef uint64_t key_hash(self, Pkt* p):
        # Each endpoint (16 address bytes as two words, and the port) hashed on its own, the
        # two combined order-independently so both directions meet.
        cdef uint64_t prime = 1099511628211ULL
        cdef uint64_t a0, a1, b0, b1
        memcpy(&a0, p.src, 8)
        memcpy(&a1, p.src + 8, 8)
        memcpy(&b0, p.dst, 8)
        memcpy(&b1, p.dst + 8, 8)
        cdef uint64_t ha = _mix64(a0 ^ _mix64(a1 ^ (<uint64_t>p.sport << 40)))
        cdef uint64_t hb = _mix64(b0 ^ _mix64(b1 ^ (<uint64_t>p.dport << 40)))
        cdef uint64_t h = ((ha + hb) * prime) ^ (ha ^ hb) ^ p.af
        # mixed again: the sum/xor above cancels in the low bits, and both the table (low
        # bits) and the flow sharding (high bits) need every bit mixed
        return _mix64(h) & 0x3FFFFFFFFFFFFFFFULL

    cdef Conn new_conn(self, Pkt* p):
        cdef Conn c = Conn.__new__(Conn)
        c.conn_id = self.next_id
        self.next_id += 1
        c.af = p.af
        memcpy(c.addr[0], p.src, 16)
        memcpy(c.addr[1], p.dst, 16)
        c.port[0] = p.sport
        c.port[1] = p.dport
        c.tun_kind = p.tun_kind
        c.tun_id = p.tun_id
        c.first_ts = p.ts_ns
        c.last_ts = p.ts_ns
        c.seen_ts = p.ts_ns
        c.first_frame = p.frame
        c.last_frame = p.frame
        c.hist = bytearray()
        c.close_side = -1
        c.idle_close_ns = -1
        c.last_pay_ts = -1
        c.last_pay_frame = -1
        c.last_pay_side = -1
        c.mark_ts = p.ts_ns
        c.mark_frame = p.frame
        c.mark_code = -1
        c.late_side = -1
        c.late_frame = -1
        c.late_ts = -1
        c.late_rst_frame = -1
        c.late_rst_ts = -1
        c.s[0].syn_rel = -1
        c.s[1].syn_rel = -1
        c.s[0].fin_frame = -1
        c.s[1].fin_frame = -1
        c.s[0].rst_frame = -1
        c.s[1].rst_frame = -1
        c.s[0].ttl_min = c.s[1].ttl_min = 256
        c.s[0].ttl_max = c.s[1].ttl_max = -1
        c.s[0].ipid_last = c.s[1].ipid_last = -2
        c.s[0].rst_ttl = c.s[1].rst_ttl = -1
        c.s[0].rst_ipid = c.s[1].rst_ipid = -2
        c.s[0].ipid_before_rst = c.s[1].ipid_before_rst = -2
        c.s[0].flight_ts = c.s[1].flight_ts = -1
        c.s[0].last_pkt_ts = c.s[1].last_pkt_ts = -1
        c.s[0].zw_ts = c.s[1].zw_ts = -1
        c.s[0].ka_ts = c.s[1].ka_ts = -1
        c.proto = 0 if self.l7 else 3
        cdef bint syn = (p.flags & F_SYN) != 0
        cdef bint ack = (p.flags & F_ACK) != 0
        if syn and not ack:
            c.client = 0
            c.roles_syn = True
            c.roles_final = True
        elif syn and ack:
            c.client = 1
            c.roles_syn = True
            c.roles_final = True
        else:
            c.client = 1 if server_side_by_ports(p.sport, p.dport) == 0 else 0
        self.open_conns.append(c)
        return c

    cdef Conn lookup(self, Pkt* p, uint64_t key):
        """The connection of `p`, whose flow hash is `key`."""
        cdef Conn head = self.tget(key)
        cdef Conn c = head
        cdef Conn prev = None
        cdef Conn nc
        cdef int d
        cdef Side* S
        while c is not None and not c.same_key(p):
            prev = c
            c = c.chain
        if c is None:
            nc = self.new_conn(p)
            nc.chain = head
            self.tset(key, nc)
            return nc
        if (p.flags & (F_SYN | F_ACK | F_RST)) == F_SYN:
            # A bare SYN on a known 4-tuple: a retransmission, or a new connection (port reuse).
            d = c.side_of(p)
            S = &c.s[d]
            if (c.s[0].did_close and c.s[1].did_close) or c.s[0].state == RESET or c.s[1].state == RESET \
                    or c.s[0].state == CLOSED or c.s[1].state == CLOSED \
                    or (S.syn_rel >= 0 and S.seq_init and unwrap(S, p.seq) != S.syn_rel):
                if not (S.syn_rel >= 0 and S.seq_init and unwrap(S, p.seq) == S.syn_rel
                        and not c.s[1 - d].did_close and c.s[1 - d].state != RESET):
                    nc = self.new_conn(p)
                    # unlink the old one: it keeps its row, the 4-tuple now means the new one
                    if prev is None:
                        nc.chain = c.chain
                    else:
                        prev.chain = c.chain
                        nc.chain = head
                    c.chain = None
                    self.tset(key, nc)
                    return nc
        return c

    # -- per packet ---------------------------------------------------------------------
    cdef void set_state(self, Side* S, int st):
        S.prev_state = S.state
        S.state = st

    cdef void zeek_state(self, Conn c, int d, bint is_orig, bint syn, bint ack, bint fin,
                         bint rst, int32_t length):
        cdef Side* S = &c.s[d]
        cdef Side* P = &c.s[1 - d]
        cdef Side* O = &c.s[c.client]
        cdef int st = S.state
        if st == INACTIVE:
            if syn:
                if is_orig:
                    self.set_state(S, SYN_ACK_SENT if ack else SYN_SENT)
                else:
                    if not ack and P.state == SYN_ACK_SENT:
                        self.set_state(P, ESTABLISHED)
                    if P.state == SYN_SENT:
                        self.set_state(P, ESTABLISHED)
                    self.set_state(S, ESTABLISHED)
            if fin:
                self.set_state(S, CLOSED)
            if rst:
                self.set_state(S, RESET)
            if S.state == INACTIVE:
                if not is_orig and length == 0 and O.state == SYN_SENT:
                    pass    # some stacks ack a SYN before answering it
                elif ack and P.state == ESTABLISHED:
                    self.set_state(S, ESTABLISHED)
                else:
                    self.set_state(S, PARTIAL)
        elif st == SYN_SENT or st == SYN_ACK_SENT:
            if fin:
                self.set_state(S, CLOSED)
            if rst:
                self.set_state(S, RESET)
        elif st == ESTABLISHED or st == PARTIAL:
            if syn and st == PARTIAL and P.state == INACTIVE and not ack:
                self.set_state(S, SYN_SENT)
            if fin and not rst:
                self.set_state(S, CLOSED)
                if P.state == RESET and P.prev_state == CLOSED:
                    self.set_state(P, CLOSED)
            if rst:
                self.set_state(S, RESET)
        elif st == CLOSED:
            if rst and P.state != CLOSED:
                self.set_state(S, RESET)

    cdef void gap_event(self, Conn c, int64_t ts, int64_t frame, int code):
        # A silence on the connection ends here: record it when long enough.
        if self.gap_floor_ns > 0 and ts - c.mark_ts >= self.gap_floor_ns:
            if c.gaps is None:
                c.gaps = []
            if len(c.gaps) < 10000:
                c.gaps.append((c.mark_ts, c.mark_frame, ts, frame, code, c.mark_code))
        c.mark_ts = ts
        c.mark_frame = frame
        c.mark_code = code

    cdef void declare_gap(self, Conn c, int d, int64_t upto, bint letter, int64_t ts, int64_t frame):
        """Bytes [next_rel, upto) of side d were never seen: count them and skip ahead."""
        cdef Side* S = &c.s[d]
        cdef int64_t n = upto - S.next_rel
        if n <= 0:
            # Nothing missing before upto, but islands at or before next_rel must still go:
            # callers loop "while islands: declare_gap(first island's start)" and rely on
            # every call removing at least that island.
            self.drain_islands(c, d)
            return
        # Zeek's conn.log counts a hole (missed_bytes, the 'G' letter) only while both
        # endpoints are established or closing from established: in a partial or one-sided
        # connection a "hole" is more likely unseen earlier packets or a never-seen sender
        # than lost data. The application layer is told of every hole regardless.
        if clean(&c.s[0]) and clean(&c.s[1]):
            S.missed += n
            if letter:
                S.n_gap += 1
                if log_step(S.n_gap):
                    hist_add(c, d, b'G')
        if c.session is not None:
            if d == c.client:
                c.session.client_gap(n, ts, frame)
            else:
                c.session.server_gap(n, ts, frame)
        S.next_rel = upto
        self.drain_islands(c, d)

    cdef void drain_islands(self, Conn c, int d):
        cdef Side* S = &c.s[d]
        cdef list isl = c.islands0 if d == 0 else c.islands1
        cdef int64_t s, e, skip
        if not isl:
            return
        while isl and (<int64_t>isl[0][0]) <= S.next_rel:
            item = isl.pop(0)
            s = item[0]
            e = item[1]
            c.island_bytes[d] -= e - s
            self.ooo_bytes -= e - s
            if e > S.next_rel:
                data = item[2]
                if data is not None:
                    skip = S.next_rel - s
                    self.deliver(c, d, data[skip:] if skip else data, item[3], item[4])
                S.next_rel = e

    cdef void drop_islands(self, Conn c, int d):
        cdef list isl = c.islands0 if d == 0 else c.islands1
        if isl:
            self.ooo_bytes -= c.island_bytes[d]
            c.island_bytes[d] = 0
            del isl[:]

    cdef void deliver(self, Conn c, int d, bytes data, int64_t ts, int64_t frame):
        """In-order stream bytes of side d go to the application layer."""
        if c.proto == 1:
            if c.session is None:
                return      # released (release_app): nothing can follow both FINs
            if d == c.client:
                c.session.client_data(data, ts, frame)
            else:
                c.session.server_data(data, ts, frame)
        elif c.proto == 0:
            self.sniff(c, d, data, ts, frame)

    cdef tuple heads_of(self, Conn c):
        """The buffered first bytes of each side: (client's, server's)."""
        return (b"".join([h[1] for h in c.heads if h[0] == c.client]),
                b"".join([h[1] for h in c.heads if h[0] != c.client]))

    cdef tuple decide(self, bytes ch, bytes sh):
        """(protocol, sni) from the first bytes; a server status line settles HTTP."""
        proto, sni = self.detect(ch, sh)
        if proto != "http" and (sh.startswith(b"HTTP/1.") or sh.startswith(b"HTTP/0.9")):
            proto = "http"
        return proto, sni

    cdef void settle(self, Conn c, str proto, object sni):
        """Fix the connection's protocol; HTTP gets a session fed with the buffered bytes."""
        heads = c.heads
        c.heads = None
        if proto == "http":
            c.proto = 1
            c.session = self.session_factory()
            for hd, hdata, hts, hframe in heads:
                if hd == c.client:
                    c.session.client_data(hdata, hts, hframe)
            for hd, hdata, hts, hframe in heads:
                if hd != c.client:
                    c.session.server_data(hdata, hts, hframe)
            return
        c.proto = 2 if proto == "tls" else 3
        c.sni = sni

    cdef void sniff(self, Conn c, int d, bytes data, int64_t ts, int64_t frame):
        if c.heads is None:
            c.heads = []
        c.heads.append((d, data, ts, frame))
        c.head_len[d] += len(data)
        cdef bytes ch, sh
        ch, sh = self.heads_of(c)
        if len(ch) < 8 and len(sh) < 8:
            return
        proto, sni = self.decide(ch, sh)
        if proto == "unknown" and not sh and 0 < len(ch) < HEAD_MAX:
            return      # the client's opening is not recognisable: wait for the server's reply
        if proto == "tls" and sni is None and len(ch) >= 5 and len(ch) < HEAD_MAX and \
                len(ch) < 5 + ((ch[3] << 8) | ch[4]):
            return      # ClientHello spans segments: wait for the rest
        self.settle(c, proto, sni)

    cdef bint stream_data(self, Conn c, int d, int64_t s, int64_t e, Pkt* p):
        """Account payload [s, e) of side d; True when any of it was new.

        Only the captured part [s, s + cap_len) counts as seen: bytes the snap length cut
        off stay a hole, which becomes a content gap once the receiver acks past it.
        """
        cdef Side* S = &c.s[d]
        cdef list isl
        cdef int64_t skip
        cdef int64_t seen_end = s + p.cap_len
        cdef bint want = c.proto <= 1
        cdef bytes data
        cdef int i
        if e <= S.next_rel:
            return False
        if s <= S.next_rel:
            if seen_end > S.next_rel:
                skip = S.next_rel - s
                S.new_bytes += seen_end - S.next_rel
                S.next_rel = seen_end
                if want:
                    data = PyBytes_FromStringAndSize(<char*>p.payload + skip, p.cap_len - skip)
                    self.deliver(c, d, data, p.ts_ns, p.frame)
                self.drain_islands(c, d)
            return True
        if seen_end <= s:
            return True
        # out of order: keep it as an island until the hole before it is filled or declared
        if d == 0:
            if c.islands0 is None:
                c.islands0 = []
            isl = c.islands0
        else:
            if c.islands1 is None:
                c.islands1 = []
            isl = c.islands1
        for item in isl:
            if (<int64_t>item[0]) <= s and (<int64_t>item[1]) >= seen_end:
                return False    # already held: a retransmission
        data = PyBytes_FromStringAndSize(<char*>p.payload, seen_end - s) if want else None
        i = 0
        while i < len(isl) and (<int64_t>isl[i][0]) < s:
            i += 1
        isl.insert(i, (s, seen_end, data, p.ts_ns, p.frame))
        c.island_bytes[d] += seen_end - s
        self.ooo_bytes += seen_end - s
        S.new_bytes += seen_end - s
        if self.ooo_bytes > self.max_ooo_bytes:
            # Over the total cap: this direction gives up what it holds (its holes become
            # gaps), so the total never exceeds the cap by more than one segment.
            self.ooo_flushes += 1
            while isl:
                self.declare_gap(c, d, isl[0][0], True, p.ts_ns, p.frame)
        while len(isl) > MAX_ISLANDS or c.island_bytes[d] > MAX_ISLAND_BYTES:
            self.declare_gap(c, d, isl[0][0], True, p.ts_ns, p.frame)
        return True

    cdef void on_packet(self, Conn c, Pkt* p):
        cdef int d = c.side_of(p)
        cdef int e = 1 - d
        cdef Side* S = &c.s[d]
        cdef Side* P = &c.s[e]
        cdef uint16_t fl = p.flags
        cdef bint syn = (fl & F_SYN) != 0
        cdef bint fin = (fl & F_FIN) != 0
        cdef bint rst = (fl & F_RST) != 0
        cdef bint ack = (fl & F_ACK) != 0
        cdef int32_t length = p.tcp_len
        cdef bint is_orig
        cdef int64_t rel, rel_ack, seg_len, end, delta, ds, upto
        cdef int bits, role
        cdef bint new_data
        cdef bint probe
        cdef bint dup

        # Roles from content, for connections whose handshake was not seen.
        if not c.roles_final and length > 0 and p.cap_len > 0:
            role = content_role(p.payload, p.cap_len)
            if role:
                if (role == 1) != (c.client == d):
                    # FlipRoles: endpoint states keep their sides; only orig/resp move.
                    c.client = 1 - c.client
                c.roles_final = True
        is_orig = d == c.client

        # A second copy of this side's last packet: same IPv4 identification (a sender gives
        # a retransmission a new one), same TCP header fields, within DUP_WINDOW_NS. Two
        # mirror sessions (ingress and egress, or both ends of a path) deliver every packet
        # twice. Zeek and Wireshark count the copy as a packet and a retransmission (history
        # 'T'), and so do the Zeek-compatible columns here; sockscope's own retransmission
        # counts (retransmits, a silent drop's flight) leave it out.
        dup = p.af == 4 and p.ip_id != 0 and S.pkts and p.ip_id == S.last_id and p.seq == S.last_seq \
            and p.ack == S.last_ack and fl == S.last_flags and p.win == S.last_win \
            and length == S.last_len and 0 <= p.ts_ns - S.last_pkt_ts <= DUP_WINDOW_NS
        if dup:
            self.duplicates += 1
        S.last_id = p.ip_id
        S.last_seq = p.seq
        S.last_ack = p.ack
        S.last_flags = fl
        S.last_win = p.win
        S.last_len = length

        S.pkts += 1
        S.ip_bytes += p.ip_len
        S.last_pkt_ts = p.ts_ns
        if rst:
            if S.rst_ttl < 0:
                S.rst_ttl = p.ttl
                S.rst_ipid = p.ip_id
                S.ipid_before_rst = S.ipid_last
        else:
            if p.ttl < S.ttl_min:
                S.ttl_min = p.ttl
            if p.ttl > S.ttl_max:
                S.ttl_max = p.ttl
            S.ipid_last = p.ip_id
        if not (c.s[0].did_close and c.s[1].did_close):
            c.last_ts = p.ts_ns
        c.seen_ts = p.ts_ns
        c.last_frame = p.frame

        seg_len = length + (1 if syn else 0) + (1 if fin else 0)
        if rst:
            seg_len -= length

        # sequence space
        if not S.seq_init or (syn and S.state != RESET and S.state != CLOSED
                              and unwrap(S, p.seq) != S.start and S.state != INACTIVE) \
                or (syn and S.state == RESET and S.prev_state == INACTIVE):
            S.seq_init = True
            S.ref_seq = p.seq
            S.ref_rel = BASE
            # Out-of-order bytes held from the old sequence space mean nothing in the new one.
            self.drop_islands(c, d)
            if syn:
                S.start = BASE
                S.last_end = BASE + seg_len
                S.next_rel = BASE + 1
            else:
                S.start = BASE - 1
                S.last_end = BASE
                S.next_rel = BASE
            S.ack_max = S.start
            delta = 0
        rel = unwrap(S, p.seq)
        if S.seq_from_ack and S.pkts == 1 and not syn:
            # Zeek re-bases an inactive endpoint at its own first packet: the bytes the peer
            # acknowledged before it are not this endpoint's size (they stay unseen_acked)
            S.rebased = True
            S.size_base = rel - 1
            S.size_ack = rel - 1
        if not rst and rel - S.ref_rel < TOO_LARGE_DELTA * 1024 and rel - S.ref_rel > -TOO_LARGE_DELTA * 1024:
            S.ref_seq = p.seq
            S.ref_rel = rel
        if syn and not ack and S.syn_rel < 0:
            S.syn_rel = rel

        # history letters (Zeek's rules)
        bits = (1 if syn else 0) + (1 if fin else 0) + (1 if rst else 0)
        if bits > 1:
            if fin and rst:
                if not S.hflags & H_I:
                    S.hflags |= H_I
                    hist_add(c, d, b'I')
            elif not S.hflags & H_Q:
                S.hflags |= H_Q
                hist_add(c, d, b'Q')
        elif bits == 1:
            if syn:
                if not S.hflags & H_SYN or rel != S.h_syn:
                    hist_add(c, d, b'H' if ack else b'S')
                S.hflags |= H_SYN
                S.h_syn = rel
            if fin:
                if not S.hflags & H_FIN or rel + length != S.h_fin:
                    hist_add(c, d, b'F')
                S.hflags |= H_FIN
                S.h_fin = rel + length
            if rst:
                if not S.hflags & H_RST or rel != S.h_rst:
                    hist_add(c, d, b'R')
                S.hflags |= H_RST
                S.h_rst = rel
        else:
            if length:
                if not S.hflags & H_DATA:
                    S.hflags |= H_DATA
                    hist_add(c, d, b'D')
            elif ack and not S.hflags & H_ACK:
                S.hflags |= H_ACK
                hist_add(c, d, b'A')

        if p.win == 0 and not rst and P.state != CLOSED and S.state != RESET:
            S.n_zero += 1
            if log_step(S.n_zero):
                hist_add(c, d, b'W')

        # Stalls (rare; kept per connection only when they happen). The peer's packets answer
        # this side's keep-alive run; a keep-alive or window probe sits at snd.nxt - 1 with at
        # most one byte (Linux sends none; others resend the last byte), or, for a window
        # probe, one new byte past the closed window.
        P.ka_ts = -1
        if not rst and not syn:
            if length <= 1 and not fin and S.seq_init and (rel == S.last_end - 1
                                                           or (length == 1 and rel == S.last_end and P.zw_ts >= 0)):
                if P.zw_ts >= 0:
                    P.zw_probes += 1
                else:
                    if S.ka_ts < 0:
                        S.ka_ts = p.ts_ns
                        S.ka_frame = p.frame
                        S.ka_n = 0
                        S.ka_quiet_ns = p.ts_ns - P.last_pkt_ts if P.last_pkt_ts >= 0 else -1
                    S.ka_n += 1
                    S.ka_last_ts = p.ts_ns
                    S.ka_last_frame = p.frame
            if p.win == 0:
                if S.zw_ts < 0:
                    S.zw_ts = p.ts_ns
                    S.zw_frame = p.frame
                    S.zw_probes = 0
            elif S.zw_ts >= 0:
                if p.ts_ns - S.zw_ts >= STALL_FLOOR_NS:
                    add_stall(c, 0, d, S.zw_ts, S.zw_frame, p.ts_ns, p.frame, S.zw_probes, True, -1)
                S.zw_ts = -1

        if fin:
            S.fin_cnt += 1
            S.fin_pos = rel + (1 if syn else 0) + length
            if S.fin_frame < 0:
                S.fin_frame = p.frame
                S.fin_ts = p.ts_ns
        if rst and S.rst_frame < 0:
            S.rst_frame = p.frame
            S.rst_ts = p.ts_ns
        if rst and c.late_frame >= 0 and c.late_rst_frame < 0 and d != c.late_side:
            # the peer's kernel refusing data sent after the close (not an RST sent before it)
            c.late_rst_frame = p.frame
            c.late_rst_ts = p.ts_ns

        # acknowledgements of the peer's data
        rel_ack = -1
        if ack:
            if not P.seq_init:
                P.seq_init = True
                P.ref_seq = p.ack - 1
                P.ref_rel = BASE
                P.start = BASE
                P.last_end = BASE
                P.ack_max = BASE
                P.next_rel = BASE + 1
                P.seq_from_ack = True
            else:
                rel_ack = unwrap(P, p.ack)
                if P.pkts == 0 and not rst:
                    self.unseen_fin(c, d, rel_ack, p)
                if not rst and rel_ack > P.ack_max and not (p.ack == 0 and rel_ack - P.ack_max > TOO_LARGE_DELTA):
                    P.ack_max = rel_ack
                    if P.flight_ts >= 0 and P.ack_max >= P.last_end:
                        P.flight_ts = -1        # all the peer's data is acknowledged
                if P.rebased and not rst and rel_ack > P.size_ack:
                    P.size_ack = rel_ack

        # Zeek's last_seq rule: retransmissions are segments that don't advance it
        end = rel + seg_len
        delta = end - S.last_end
        if (syn or rst) and (delta > TOO_LARGE_DELTA or delta < -TOO_LARGE_DELTA):
            pass
        elif fin and S.last_end == S.start + 1:
            S.last_end = end
        elif S.state == RESET:
            pass
        elif delta > 0:
            if length > 0 and S.flight_ts < 0:
                S.flight_ts = p.ts_ns
                S.flight_frame = p.frame
                S.flight_rexmit = 0
                # the peer's ACK before the flight, at least the flight's first byte: a
                # sequence space learned mid-stream or from the peer's ACK starts one below it
                S.flight_ack0 = max(S.ack_max, rel + (1 if syn else 0))
            S.last_end = end
        elif length > 0:
            S.n_rxmit += 1
            if S.flight_ts >= 0 and not dup:
                S.flight_rexmit += 1
            if log_step(S.n_rxmit):
                hist_add(c, d, b'T')

        self.zeek_state(c, d, is_orig, syn, ack, fin, rst, length)

        # closes: the first FIN or RST of the connection is "the close"
        if fin or rst:
            if c.close_kind == 0:
                self.set_close(c, 2 if rst else 1, d, p)
            if (fin and S.fin_frame == p.frame) or (rst and S.rst_frame == p.frame):
                if length > 0 and not rst:
                    pass   # data on the FIN is activity, handled below before the event
                else:
                    self.gap_event(c, p.ts_ns, p.frame, (2 if is_orig else 4) + (1 if rst else 0))
            S.did_close = True

        # payload
        if length > 0 and not rst:
            ds = rel + (1 if syn else 0)
            probe = length <= 1 and ds + length == S.next_rel     # keep-alive probe at snd.nxt-1
            new_data = self.stream_data(c, d, ds, ds + length, p)
            if not new_data and not probe and not dup:
                c.retx += 1
            if new_data:
                self.gap_event(c, p.ts_ns, p.frame, 0 if is_orig else 1)
                if c.close_kind == 0 or (c.close_frame == p.frame):
                    c.last_pay_ts = p.ts_ns
                    c.last_pay_frame = p.frame
                    c.last_pay_side = d
                    if c.close_frame == p.frame:
                        c.idle_close_ns = 0
                else:
                    c.late_pkts += 1
                    c.late_bytes += length
                    if c.late_frame < 0:
                        c.late_frame = p.frame
                        c.late_ts = p.ts_ns
                        c.late_side = d
                if fin:
                    self.gap_event(c, p.ts_ns, p.frame, (2 if is_orig else 4))

        # the peer acknowledged bytes we never saw: a content gap
        if rel_ack >= 0 and P.next_rel < rel_ack:
            upto = rel_ack
            if P.fin_cnt and upto > P.fin_pos:
                upto = P.fin_pos
            if upto > P.next_rel and upto - P.next_rel < (1 << 34):
                # bytes the peer sent that the capture never showed: the other side's ACK
                # is their only trace (a one-direction capture, or capture loss)
                P.unseen_acked += upto - P.next_rel
                if upto - P.next_rel >= 2:      # more than an unseen FIN's one
                    P.unseen_ts = p.ts_ns
                self.declare_gap(c, 1 - d, upto, not (fin or rst), p.ts_ns, p.frame)

        if fin and not c.app_released and S.fin_cnt and P.fin_cnt:
            self.release_app(c)

    cdef void unseen_fin(self, Conn c, int d, int64_t rel_ack, Pkt* p):
        """Side d's ACK of a peer never captured (one direction only): an ACK one sequence
        number past everything the peer sent acknowledges its FIN, so the peer closed first
        (before this packet), even if d's own FIN comes with this ACK. The close is then the
        peer's (kind FIN, this frame: the packet that proves it); should the ACKs go further
        later, it was a byte of data after all, and the claim is withdrawn."""
        cdef Side* P = &c.s[1 - d]
        if P.fin_seen_by_ack:       # the close is that FIN (set together, below)
            if rel_ack > P.fin_seen_at:
                c.close_kind = 0
                c.idle_close_ns = -1
                P.fin_seen_by_ack = 0
            return
        if c.close_kind == 0 and rel_ack == P.next_rel + 1:
            P.fin_seen_by_ack = p.frame
            P.fin_seen_at = rel_ack
            self.set_close(c, 1, 1 - d, p)

    cdef void set_close(self, Conn c, int kind, int side, Pkt* p):
        """The connection's close: its first FIN (1) or RST (2), by ``side``, at packet p."""
        c.close_kind = kind
        c.close_side = side
        c.close_ts = p.ts_ns
        c.close_frame = p.frame
        if c.last_pay_ts >= 0:
            c.idle_close_ns = p.ts_ns - c.last_pay_ts
        if self.on_close is not None:
            self.report_close(c, p)

    cdef void release_app(self, Conn c):
        """Both sides sent a FIN: once every byte up to both FINs has been delivered, no
        packet can reach the application layer again (later packets are retransmissions, the
        last ACK, perhaps an RST). The HTTP session, the sniffed first bytes and the
        silences so far go to the row store now; the connection lingers with its TCP state
        only (late packets still need its sequence space), about 1 KB instead of 6.

        A close by RST is not released early: the peer's answer may still cross it (the
        response after close the analysis reports). Nor is live mode (``watch``), whose row
        batches must hold a connection's requests with its row."""
        cdef Side* A = &c.s[0]
        cdef Side* B = &c.s[1]
        cdef RowStore rows
        if A.state == RESET or B.state == RESET or A.next_rel < A.fin_pos or B.next_rel < B.fin_pos \
                or c.islands0 or c.islands1 or c.late_pkts:
            # bytes still missing before a FIN may yet arrive; data after the close (a
            # retransmitted request, bytes past a FIN) is judged against closes still to come
            return
        if self.sweep_every_ns > 0 or not isinstance(self.sink, RowStore):
            return
        rows = <RowStore>self.sink
        if rows.on_release is None:
            return
        if c.proto == 0 and c.heads:
            ch, sh = self.heads_of(c)
            proto, sni = self.decide(ch, sh)
            self.settle(c, proto, sni)
        c.heads = None
        rows.release(c)
        c.app_released = True

    cdef void report_close(self, Conn c, Pkt* p):
        """Live mode: what a person needs the moment a connection starts closing."""
        cdef int cl = c.client
        cdef int alen = 4 if c.af == 4 else 16
        cdef Side* Q = &c.s[cl]
        if c.session is not None:
            outstanding = c.session.pending > 0
            level = "http"
            # A server FIN that acknowledges none of the client's unacknowledged flight, when
            # every waiting request began in that flight, crossed them on the wire: the server
            # never had them (sockscope.analysis.closes.crossed_requests, the batch's rule).
            if outstanding and c.close_kind == 1 and c.close_side != cl and Q.flight_ts >= 0 \
                    and Q.ack_max < Q.last_end and Q.ack_max == Q.flight_ack0 \
                    and c.session.dropped_requests == 0 and len(c.session.exchanges) >= c.session.pending:
                exs = c.session.exchanges
                ex = exs[len(exs) - c.session.pending]     # the first one waiting
                if ex.request_start_ns is not None and ex.request_start_ns >= Q.flight_ts:
                    outstanding = False
        else:
            outstanding = c.last_pay_side == cl
            level = "tcp"
        self.on_close({
            "conn_id": c.conn_id, "client_addr": PyBytes_FromStringAndSize(<char*>c.addr[cl], alen),
            "client_port": c.port[cl], "server_addr": PyBytes_FromStringAndSize(<char*>c.addr[1 - cl], alen),
            "server_port": c.port[1 - cl], "closed_by": "client" if c.close_side == cl else "server",
            "close_kind": "RST" if c.close_kind == 2 else "FIN", "close_ts": c.close_ts,
            "close_frame": c.close_frame,
            "idle_s": c.idle_close_ns / 1e9 if c.idle_close_ns >= 0 else None,
            "last_payload_frame": c.last_pay_frame if c.last_pay_frame >= 0 else None,
            "outstanding": bool(outstanding), "level": level,
            # the closer's RST against its own packets' TTLs (sockscope.analysis.closes.forged_rst)
            "rst_ttl": c.s[c.close_side].rst_ttl if c.close_kind == 2 else None,
            "ttl_min": c.s[c.close_side].ttl_min if c.s[c.close_side].ttl_max >= 0 else None,
            "ttl_max": c.s[c.close_side].ttl_max if c.s[c.close_side].ttl_max >= 0 else None,
            "requests": len(c.session.exchanges) if c.session is not None else 0,
        })

    # -- driving ------------------------------------------------------------------------
    cdef inline void take(self, Pkt* p):
        """One packet of the capture: its times count; a TCP segment of this shard is tracked."""
        cdef Conn c
        cdef int b
        cdef uint64_t key
        if self.capture_first_ts < 0:
            self.capture_first_ts = p.ts_ns
        if p.ts_ns > self.capture_last_ts:
            self.capture_last_ts = p.ts_ns
        if p.status != PKT_TCP:
            return
        key = self.key_hash(p)
        if self.shard_hi - self.shard_lo < N_BUCKETS:
            b = <int>(key >> BUCKET_SHIFT)
            if b < self.shard_lo or b >= self.shard_hi:
                return      # another worker's flow (both directions hash alike)
        self.tcp_packets += 1
        c = self.lookup(p, key)
        self.on_packet(c, p)

    def run(self, PacketSource src, progress=None):
        """Consume every packet of `src`. `progress(frames)` is called now and then."""
        cdef Pkt p
        cdef int64_t n = 0
        cdef int64_t next_sweep = 0
        cdef int64_t next_sweep_ts = 0
        while src.next_packet(&p):
            n += 1
            self.take(&p)
            # Every 64k packets; live (``watch``) also every sweep_every_ns of capture time, so
            # a quiet stream still retires its closed connections soon after their linger.
            if n >= next_sweep or (self.sweep_every_ns > 0 and p.ts_ns >= next_sweep_ts):
                next_sweep = n + 65536
                next_sweep_ts = p.ts_ns + self.sweep_every_ns
                self.sweep(p.ts_ns, False)
                if progress is not None:
                    progress(n)
        self.packets += n

    def run_merged(self, list sources, progress=None):
        """Consume several sources as one capture, packets interleaved by timestamp.

        What ``mergecap`` (without -a) writes: captures of different interfaces or hosts
        taken at the same time. Frames are numbered in merged order; on equal timestamps the
        earlier source in the list goes first. Each source keeps exactly one decoded packet
        pending, whose payload stays valid because only that source is read next.
        """
        cdef int k = len(sources), i, best
        cdef PacketSource src
        cdef Pkt* pend = <Pkt*>PyMem_Malloc(max(k, 1) * sizeof(Pkt))
        cdef bint* live = <bint*>PyMem_Malloc(max(k, 1) * sizeof(bint))
        cdef int64_t n = 0
        cdef int64_t next_sweep = 0
        if pend == NULL or live == NULL:
            PyMem_Free(pend)
            PyMem_Free(live)
            raise MemoryError()
        try:
            for i in range(k):
                src = sources[i]
                live[i] = src.next_packet(&pend[i])
            while True:
                best = -1
                for i in range(k):
                    if live[i] and (best < 0 or pend[i].ts_ns < pend[best].ts_ns):
                        best = i
                if best < 0:
                    break
                n += 1
                pend[best].frame = n
                self.take(&pend[best])
                if n >= next_sweep:
                    next_sweep = n + 65536
                    self.sweep(pend[best].ts_ns, False)
                    if progress is not None:
                        progress(n)
                src = sources[best]
                live[best] = src.next_packet(&pend[best])
        finally:
            PyMem_Free(pend)
            PyMem_Free(live)
        self.packets += n

    @property
    def open_connections(self) -> int:
        """Connections held right now (open, or closed and lingering)."""
        return len(self.open_conns)

    def finish(self):
        """End of capture: retire every connection still held."""
        self.sweep(self.capture_last_ts, True)

    cdef void sweep(self, int64_t now, bint final):
        cdef list keep = []
        cdef list held = self.open_conns
        cdef Py_ssize_t i, n = len(held)
        cdef Conn c
        cdef bint done
        for i in range(n):
            c = held[i]
            done = final or (
                ((c.s[0].did_close and c.s[1].did_close) or c.s[0].state == RESET or c.s[1].state == RESET)
                and now - c.seen_ts > self.linger_ns)
            if not done and n > self.max_open and now - c.seen_ts > self.linger_ns:
                done = True
                self.evicted += 1
            if done:
                # let go of it now, so a large final sweep frees connections as rows grow
                held[i] = None
                self.retire(c)
            else:
                keep.append(c)
        self.open_conns = keep

    cdef void retire(self, Conn c):
        cdef uint64_t key
        cdef Conn h, prev
        cdef Pkt fake
        # unlink from the hash chain
        fake.af = c.af
        memcpy(fake.src, c.addr[0], 16)
        memcpy(fake.dst, c.addr[1], 16)
        fake.sport = c.port[0]
        fake.dport = c.port[1]
        key = self.key_hash(&fake)
        h = self.tget(key)
        if h is c:
            if c.chain is None:
                self.tdel(key)
            else:
                self.tset(key, c.chain)
        elif h is not None:
            prev = h
            while prev.chain is not None and prev.chain is not c:
                prev = prev.chain
            if prev.chain is c:
                prev.chain = c.chain
        c.chain = None
        c.retired = True
        self.finalize(c)
        if isinstance(self.sink, RowStore):
            (<RowStore>self.sink).add(c)
        else:
            self.sink(c)

    cdef void finalize(self, Conn c):
        cdef int d
        cdef Side* S
        cdef list isl
        # Out-of-order data never preceded by its missing bytes: the holes are capture loss.
        for d in range(2):
            isl = c.islands0 if d == 0 else c.islands1
            while isl:
                self.declare_gap(c, d, isl[0][0], False, c.seen_ts, c.last_frame)
        if c.proto == 0 and c.heads:
            # too little data to be sure: decide on what there is
            ch, sh = self.heads_of(c)
            proto, sni = self.decide(ch, sh)
            self.settle(c, proto, sni)
        # stalls still open when the connection ended: the window never reopened, the probes
        # were never answered
        for d in range(2):
            S = &c.s[d]
            if S.zw_ts >= 0:
                add_stall(c, 0, d, S.zw_ts, S.zw_frame, c.seen_ts, c.last_frame, S.zw_probes, False, -1)
                S.zw_ts = -1
            if S.ka_ts >= 0:
                add_stall(c, 1, d, S.ka_ts, S.ka_frame, S.ka_last_ts, S.ka_last_frame, S.ka_n, False, S.ka_quiet_ns)
                S.ka_ts = -1
        # a connection never closed: its last silence runs to the end of the capture
        if c.close_kind == 0 and self.gap_floor_ns > 0 and self.capture_last_ts - c.mark_ts >= self.gap_floor_ns:
            if c.gaps is None:
                c.gaps = []
            c.gaps.append((c.mark_ts, c.mark_frame, self.capture_last_ts, -1, 6, c.mark_code))

# Zeek's endpoint states by code (the client_state/server_state columns; sockscope.schema's
# ENDPOINT_STATES, checked by a test)
_STATE_NAMES = ("INACTIVE", "SYN_SENT", "SYN_ACK_SENT", "PARTIAL", "ESTABLISHED", "CLOSED", "RESET")


cdef inline bint clean(Side* S):
    """Established, or closed from established (Zeek's test before it reports a gap)."""
    return S.state == ESTABLISHED or (S.state == CLOSED and S.prev_state == ESTABLISHED)


cdef int64_t endpoint_size(Side* S, Side* P):
    cdef int64_t top, size
    # An endpoint never seen sending has only the peer's ACKs to go by: Zeek re-bases it at
    # every ACK while it is inactive, so it reports no bytes for it (a one-sided capture).
    cdef int64_t base = S.start
    cdef int64_t acked = S.ack_max
    if not S.seq_init or S.state == INACTIVE:
        return 0
    if S.rebased:       # Zeek's start and ACKs since the endpoint's own first packet
        base = S.size_base
        acked = S.size_ack
    elif S.prev_state == SYN_SENT and S.state == RESET and P.state == INACTIVE and S.ack_max <= S.start + 1:
        return 0        # a SYN answered by nothing but its own RST is a scan: nothing was sent
    top = S.last_end if S.last_end > acked else acked
    size = top - base
    if size > 0:
        size -= 1
    if S.fin_cnt > 0 and size > 0:
        size -= 1
    return size


cdef str conn_state(Side* O, Side* R, str history, int64_t osize, int64_t rsize):
    cdef int os = O.state
    cdef int rs = R.state
    cdef bint o_inactive = os == INACTIVE or os == PARTIAL
    cdef bint r_inactive = rs == INACTIVE or rs == PARTIAL
    if rs == RESET:
        if os == SYN_SENT or os == SYN_ACK_SENT or (os == RESET and osize == 0 and rsize == 0):
            return "REJ"
        if o_inactive:
            return "RSTRH"
        return "RSTR"
    if os == RESET:
        if r_inactive:
            h = history[1:] if history.startswith("^") else history
            if h.startswith("S"):
                for ch in h[1:]:
                    if ch in "HAFGIQ":
                        break
                    if ch == "R":
                        return "RSTOS0"
            return "OTH"
        return "RSTO"
    if rs == CLOSED and os == CLOSED:
        return "SF"
    if os == CLOSED:
        return "SH" if r_inactive else "S2"
    if rs == CLOSED:
        return "SHR" if o_inactive else "S3"
    if os == SYN_SENT and rs == INACTIVE:
        return "S0"
    if os == ESTABLISHED and rs == ESTABLISHED:
        return "S1"
    return "OTH"


# -- compact row store -------------------------------------------------------------------

from cpython cimport array as carray
import array as pyarray

DEF NA = -9223372036854775807 - 1

INT_COLUMNS = (
    "conn_id", "client_port", "server_port", "start", "end", "client_pkts", "server_pkts",
    "client_bytes", "server_bytes", "client_ip_bytes", "server_ip_bytes", "close_ts", "close_frame",
    "idle_close_ns", "last_payload_ts", "last_payload_frame", "retransmits", "gap_count",
    "missed_bytes", "first_frame", "last_frame", "client_fin_ts", "client_fin_frame",
    "server_fin_ts", "server_fin_frame", "client_rst_ts", "client_rst_frame", "server_rst_ts",
    "server_rst_frame", "data_after_close_pkts", "data_after_close_bytes", "data_after_close_frame",
    "data_after_close_ts", "requests", "unanswered", "data_after_close_rst_ts", "data_after_close_rst_frame",
    "client_ttl_min", "client_ttl_max", "client_rst_ttl", "client_rst_ip_id", "client_ip_id_before_rst",
    "server_ttl_min", "server_ttl_max", "server_rst_ttl", "server_rst_ip_id", "server_ip_id_before_rst",
    "client_unacked_since_ts", "client_unacked_since_frame", "client_unacked_retransmits", "client_unacked_bytes",
    "client_unacked_peer_quiet_ns", "server_unacked_since_ts", "server_unacked_since_frame",
    "server_unacked_retransmits", "server_unacked_bytes", "server_unacked_peer_quiet_ns",
    # small codes, decoded to categories by the engine
    "roles_from", "state", "closed_by", "close_kind", "last_payload_by", "data_after_close_by",
    "protocol", "client_state", "server_state",
    # the tunnel the connection's first packet came in (code - 1 of capture's TUN_*, -1: none)
    "tunnel", "tunnel_id",
    # how much of the unacknowledged flight the peer did acknowledge (its partial ACKs)
    "client_unacked_acked_bytes", "server_unacked_acked_bytes",
    # bytes a side sent that no captured packet carried, known from its peer's ACKs (a
    # one-direction capture, capture loss), and when the last of them was acknowledged
    "client_unseen_acked_bytes", "client_unseen_acked_ts", "server_unseen_acked_bytes", "server_unseen_acked_ts",
    # 1: the close is a FIN never captured, known from the peer's ACK (close_frame is that ACK)
    "close_by_ack",
)
STATE_CODES = ("S0", "S1", "SF", "REJ", "S2", "S3", "RSTO", "RSTR", "RSTOS0", "RSTRH", "SH", "SHR", "OTH")
PROTOCOL_CODES = ("unknown", "http", "tls", "unknown")


# Columns narrower than int64 (ports, and codes decoded to categories by the engine): a
# finished connection is ~300 bytes of row store instead of ~450.
NARROW_COLUMNS = {
    # evidence columns, -1 for missing (the engine turns it into null)
    "client_ttl_min": "h", "client_ttl_max": "h", "client_rst_ttl": "h", "server_ttl_min": "h",
    "server_ttl_max": "h", "server_rst_ttl": "h", "client_rst_ip_id": "i", "client_ip_id_before_rst": "i",
    "server_rst_ip_id": "i", "server_ip_id_before_rst": "i", "client_unacked_retransmits": "i",
    "client_unacked_bytes": "i", "server_unacked_retransmits": "i", "server_unacked_bytes": "i",
    "client_unacked_acked_bytes": "i", "server_unacked_acked_bytes": "i", "close_by_ack": "b",
    "client_port": "H", "server_port": "H", "roles_from": "b", "state": "b", "closed_by": "b",
    "close_kind": "b", "last_payload_by": "b", "data_after_close_by": "b", "protocol": "b",
    "client_state": "b", "server_state": "b", "tunnel": "b",
}


cdef inline void push(carray.array a, int64_t v):
    cdef Py_ssize_t n = len(a)
    carray.resize_smart(a, n + 1)
    a.data.as_longlongs[n] = v


cdef inline void push16(carray.array a, int v):
    cdef Py_ssize_t n = len(a)
    carray.resize_smart(a, n + 1)
    a.data.as_ushorts[n] = <unsigned short>v


cdef inline void push16s(carray.array a, int v):
    cdef Py_ssize_t n = len(a)
    carray.resize_smart(a, n + 1)
    a.data.as_shorts[n] = <short>v


cdef inline void push32(carray.array a, int64_t v):
    cdef Py_ssize_t n = len(a)
    carray.resize_smart(a, n + 1)
    a.data.as_ints[n] = <int>(v if v < 2147483647 else 2147483647)


cdef inline void push8(carray.array a, int v):
    cdef Py_ssize_t n = len(a)
    carray.resize_smart(a, n + 1)
    a.data.as_schars[n] = <signed char>v


cdef class RowStore:
    """Retired connections as integer columns (int64 with an NA sentinel; ports and codes
    narrower, see NARROW_COLUMNS), addresses in 16-byte slots, and a few object columns."""

    cdef public dict ints
    cdef list cols
    cdef bytearray caddr      # 16 bytes per row (an IPv4 address in the first 4)
    cdef bytearray saddr
    cdef carray.array alen    # 4 or 16 per row
    cdef public list history
    cdef public list sni
    cdef dict hist_seen
    cdef public object on_extra    # called for connections with HTTP sessions or gaps
    cdef object on_release         # on_extra.release, if it has one (Tracker.release_app)
    cdef object on_rest            # on_extra.rest: what a released connection adds at retirement
    cdef public int64_t n

    def __init__(self, on_extra=None):
        self.ints = {}
        self.cols = []
        for name in INT_COLUMNS:
            a = pyarray.array(NARROW_COLUMNS.get(name, "q"))
            self.ints[name] = a
            self.cols.append(a)
        self.caddr = bytearray()
        self.saddr = bytearray()
        self.alen = pyarray.array("b")
        self.history = []
        self.sni = []
        self.hist_seen = {}
        self.on_extra = on_extra
        self.on_release = getattr(on_extra, "release", None)
        self.on_rest = getattr(on_extra, "rest", None)
        self.n = 0

    cdef tuple closes_of(self, Conn c):
        cdef Side* O = &c.s[c.client]
        cdef Side* R = &c.s[1 - c.client]
        # a FIN never captured but acknowledged (Tracker.unseen_fin: it is the close) ends
        # requests as one seen
        cdef object ofin = O.fin_ts if O.fin_frame >= 0 else (c.close_ts if O.fin_seen_by_ack else None)
        cdef object rfin = R.fin_ts if R.fin_frame >= 0 else (c.close_ts if R.fin_seen_by_ack else None)
        return (ofin, rfin, O.rst_ts if O.rst_frame >= 0 else None, R.rst_ts if R.rst_frame >= 0 else None)

    cdef void release(self, Conn c):
        """The application layer of a connection both sides closed (Tracker.release_app):
        its exchanges and silences so far become rows now and its session is let go."""
        res = self.on_release(c.conn_id, c.session, c.gaps or [], c.proto, self.closes_of(c))
        c.app_requests = res[0]
        c.app_unanswered = res[1]
        c.app_waiting_since = NA if res[2] is None else res[2]
        c.session = None
        c.gaps = None

    cdef void add(self, Conn c):
        cdef int cl = c.client
        cdef int sv = 1 - cl
        cdef Side* O = &c.s[cl]
        cdef Side* R = &c.s[sv]
        cdef int64_t osize = endpoint_size(O, R)
        cdef int64_t rsize = endpoint_size(R, O)
        cdef int alen = 4 if c.af == 4 else 16
        cdef int64_t nreq = 0, nunans = 0
        cdef bytearray hist = bytearray()
        cdef int b, ch
        cdef bint ofl, rfl
        if cl != 0:
            hist.append(94)     # '^': the first packet came from the server
        for b in c.hist:
            ch = b & 0x7F
            if ((b >> 7) & 1) != cl and 65 <= ch <= 90:
                ch += 32
            hist.append(ch)
        h = hist.decode("ascii")
        # Most connections share a handful of histories (a SYN flood: one); keep one copy.
        h = self.hist_seen.setdefault(h, h) if len(self.hist_seen) < 65536 else h
        state = conn_state(O, R, h, osize, rsize)
        # stalls' sides as 0 client / 1 server (roles may have flipped since they were kept)
        stalls = [(t[0], 0 if t[1] == cl else 1) + t[2:] for t in c.stalls] if c.stalls else []
        if c.app_released and self.on_rest is not None:
            nreq, nunans = c.app_requests, c.app_unanswered
            if c.gaps or stalls:
                self.on_rest(c.conn_id, c.gaps or [], c.proto, stalls,
                             None if c.app_waiting_since == NA else c.app_waiting_since)
        elif c.session is not None or c.gaps or stalls:
            nreq, nunans = self.on_extra(c.conn_id, c.session, c.gaps or [], c.proto, self.closes_of(c), stalls)
        cdef list K = self.cols
        push(<carray.array>K[0], c.conn_id)
        push16(<carray.array>K[1], c.port[cl])
        push16(<carray.array>K[2], c.port[sv])
        push(<carray.array>K[3], c.first_ts)
        push(<carray.array>K[4], c.last_ts)
        push(<carray.array>K[5], O.pkts)
        push(<carray.array>K[6], R.pkts)
        push(<carray.array>K[7], osize)
        push(<carray.array>K[8], rsize)
        push(<carray.array>K[9], O.ip_bytes)
        push(<carray.array>K[10], R.ip_bytes)
        push(<carray.array>K[11], c.close_ts if c.close_kind else NA)
        push(<carray.array>K[12], c.close_frame if c.close_kind else NA)
        push(<carray.array>K[13], c.idle_close_ns if (c.close_kind and c.idle_close_ns >= 0) else NA)
        push(<carray.array>K[14], c.last_pay_ts if c.last_pay_ts >= 0 else NA)
        push(<carray.array>K[15], c.last_pay_frame if c.last_pay_frame >= 0 else NA)
        push(<carray.array>K[16], c.retx)
        push(<carray.array>K[17], O.n_gap + R.n_gap)
        push(<carray.array>K[18], O.missed + R.missed)
        push(<carray.array>K[19], c.first_frame)
        push(<carray.array>K[20], c.last_frame)
        push(<carray.array>K[21], O.fin_ts if O.fin_frame >= 0 else NA)
        push(<carray.array>K[22], O.fin_frame if O.fin_frame >= 0 else NA)
        push(<carray.array>K[23], R.fin_ts if R.fin_frame >= 0 else NA)
        push(<carray.array>K[24], R.fin_frame if R.fin_frame >= 0 else NA)
        push(<carray.array>K[25], O.rst_ts if O.rst_frame >= 0 else NA)
        push(<carray.array>K[26], O.rst_frame if O.rst_frame >= 0 else NA)
        push(<carray.array>K[27], R.rst_ts if R.rst_frame >= 0 else NA)
        push(<carray.array>K[28], R.rst_frame if R.rst_frame >= 0 else NA)
        push(<carray.array>K[29], c.late_pkts)
        push(<carray.array>K[30], c.late_bytes)
        push(<carray.array>K[31], c.late_frame if c.late_frame >= 0 else NA)
        push(<carray.array>K[32], c.late_ts if c.late_frame >= 0 else NA)
        push(<carray.array>K[33], nreq)
        push(<carray.array>K[34], nunans)
        push(<carray.array>K[35], c.late_rst_ts if c.late_rst_frame >= 0 else NA)
        push(<carray.array>K[36], c.late_rst_frame if c.late_rst_frame >= 0 else NA)
        push16s(<carray.array>K[37], O.ttl_min if O.ttl_max >= 0 else -1)
        push16s(<carray.array>K[38], O.ttl_max)
        push16s(<carray.array>K[39], O.rst_ttl)
        push32(<carray.array>K[40], O.rst_ipid if O.rst_ipid >= 0 else -1)
        push32(<carray.array>K[41], O.ipid_before_rst if O.ipid_before_rst >= 0 else -1)
        push16s(<carray.array>K[42], R.ttl_min if R.ttl_max >= 0 else -1)
        push16s(<carray.array>K[43], R.ttl_max)
        push16s(<carray.array>K[44], R.rst_ttl)
        push32(<carray.array>K[45], R.rst_ipid if R.rst_ipid >= 0 else -1)
        push32(<carray.array>K[46], R.ipid_before_rst if R.ipid_before_rst >= 0 else -1)
        # an unacknowledged flight at the end; the peer's silence since it began, when the
        # capture shows the peer at all (else no claim: a one-sided capture sees no ACKs)
        ofl = O.flight_ts >= 0 and O.ack_max < O.last_end
        rfl = R.flight_ts >= 0 and R.ack_max < R.last_end
        push(<carray.array>K[47], O.flight_ts if ofl else NA)
        push(<carray.array>K[48], O.flight_frame if ofl else NA)
        push32(<carray.array>K[49], O.flight_rexmit if ofl else -1)
        push32(<carray.array>K[50], max(0, O.last_end - O.ack_max - (1 if O.fin_cnt else 0)) if ofl else -1)
        push(<carray.array>K[51], O.flight_ts - R.last_pkt_ts if ofl and 0 <= R.last_pkt_ts < O.flight_ts else NA)
        push(<carray.array>K[52], R.flight_ts if rfl else NA)
        push(<carray.array>K[53], R.flight_frame if rfl else NA)
        push32(<carray.array>K[54], R.flight_rexmit if rfl else -1)
        push32(<carray.array>K[55], max(0, R.last_end - R.ack_max - (1 if R.fin_cnt else 0)) if rfl else -1)
        push(<carray.array>K[56], R.flight_ts - O.last_pkt_ts if rfl and 0 <= O.last_pkt_ts < R.flight_ts else NA)
        push8(<carray.array>K[57], 0 if c.roles_syn else 1)
        push8(<carray.array>K[58], STATE_CODES.index(state))
        push8(<carray.array>K[59], -1 if c.close_kind == 0 else (0 if c.close_side == cl else 1))
        push8(<carray.array>K[60], c.close_kind - 1)
        push8(<carray.array>K[61], -1 if c.last_pay_side < 0 else (0 if c.last_pay_side == cl else 1))
        push8(<carray.array>K[62], -1 if c.late_side < 0 else (0 if c.late_side == cl else 1))
        push8(<carray.array>K[63], c.proto)
        push8(<carray.array>K[64], O.state)
        push8(<carray.array>K[65], R.state)
        push8(<carray.array>K[66], <int>c.tun_kind - 1)
        push(<carray.array>K[67], c.tun_id if c.tun_kind else NA)
        push32(<carray.array>K[68], min(O.ack_max - O.flight_ack0, 0x7fffffff) if ofl else -1)
        push32(<carray.array>K[69], min(R.ack_max - R.flight_ack0, 0x7fffffff) if rfl else -1)
        push(<carray.array>K[70], O.unseen_acked if O.unseen_acked > 0 else NA)
        push(<carray.array>K[71], O.unseen_ts if O.unseen_ts > 0 else NA)
        push(<carray.array>K[72], R.unseen_acked if R.unseen_acked > 0 else NA)
        push(<carray.array>K[73], R.unseen_ts if R.unseen_ts > 0 else NA)
        push8(<carray.array>K[74], 1 if O.fin_seen_by_ack or R.fin_seen_by_ack else 0)
        self.caddr.extend((<char*>c.addr[cl])[:16])
        self.saddr.extend((<char*>c.addr[sv])[:16])
        push8(self.alen, alen)
        self.history.append(h)
        self.sni.append(c.sni)
        self.n += 1
        # drop what the row no longer needs
        c.session = None
        c.gaps = None
        c.stalls = None
        c.heads = None

    def __call__(self, Conn c):
        self.add(c)

    def addresses(self, bint client, order=None):
        """The client (or server) address of every row as bytes (4 or 16), in row order or
        in ``order`` (row positions)."""
        cdef bytearray buf = self.caddr if client else self.saddr
        cdef const unsigned char[:] view = buf
        cdef Py_ssize_t i, k, n = self.n
        cdef list out = []
        if n == 0:
            return out
        for k in (range(n) if order is None else order):
            i = k
            out.append(PyBytes_FromStringAndSize(<char*>&view[16 * i], self.alen.data.as_schars[i]))
        return out

    @property
    def client_addr(self):
        return self.addresses(True)

    @property
    def server_addr(self):
        return self.addresses(False)

    def release_addresses(self):
        """Free the address store (the table has its text)."""
        self.caddr = bytearray()
        self.saddr = bytearray()
        self.alen = pyarray.array("b")
