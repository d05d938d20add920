# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled capture reader: pcap / pcapng records -> decoded TCP segment headers.

Theory of operation
-------------------
`PacketSource` owns a byte buffer refilled from a binary file object (plain file, gzip
stream or stdin). `next_packet()` walks one record (pcap) or block (pcapng), decodes the
link layer, IPv4/IPv6 and the TCP header into a caller-owned C struct `Pkt`, and returns.
No Python object is created per packet: that is what lets the tracker above run at
millions of packets per second. Anything that is not a TCP segment still gets a frame
number (Wireshark numbers every packet block) and a `status` saying why it was skipped.

Damaged input never raises: a record with an absurd length, a truncated last record or a
pcapng block whose trailing length disagrees ends the walk with a warning naming the frame
and byte offset; everything before it is kept.
"""

from cpython.bytearray cimport PyByteArray_AS_STRING
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy, memmove, memset

import zlib

from sockscope.errors import CaptureError

DEF BUF_SIZE = 4 * 1024 * 1024
# No real packet record is this large; a bigger length means corruption, not data.
DEF MAX_RECORD = 64 * 1024 * 1024
DEF MAX_INTERFACES = 4096
DEF MAX_TS_NS = 4611686018427387904   # 2^62 ns: year 2116

STATUS_NAMES = ("tcp", "not_ip", "not_tcp", "ip_fragment", "truncated_headers",
                "bad_header", "unsupported_link_type")

# Names of the TUN_* kinds (index = code), as facts and tables show them.
TUNNEL_NAMES = (None, "vxlan", "geneve", "gre", "erspan", "ipip")

LINKTYPE_NAMES = {
    0: "NULL", 1: "EN10MB", 12: "RAW", 14: "RAW", 101: "RAW", 108: "LOOP", 113: "LINUX_SLL",
    228: "IPV4", 229: "IPV6", 239: "NFLOG", 276: "LINUX_SLL2",
}


cdef inline uint16_t be16(const uint8_t* p) noexcept nogil:
    return (<uint16_t>p[0] << 8) | p[1]

cdef inline uint32_t be32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]

cdef inline uint16_t le16(const uint8_t* p) noexcept nogil:
    return (<uint16_t>p[1] << 8) | p[0]

cdef inline uint32_t le32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[3] << 24) | (<uint32_t>p[2] << 16) | (<uint32_t>p[1] << 8) | p[0]

cdef inline uint32_t rd32(const uint8_t* p, bint be) noexcept nogil:
    return be32(p) if be else le32(p)

cdef inline uint16_t rd16(const uint8_t* p, bint be) noexcept nogil:
    return be16(p) if be else le16(p)


cdef inline int64_t pow10(int n) noexcept nogil:
    cdef int64_t v = 1
    while n > 0:
        v *= 10
        n -= 1
    return v


DEF MAX_NESTING = 4     # tunnels inside tunnels: deeper than this is not a real capture


cdef inline void tunnel(Pkt* p, int kind, uint32_t ident) noexcept nogil:
    # the outermost tunnel names the connection's path; inner ones only carry it further
    if p.tun_kind == TUN_NONE:
        p.tun_kind = kind
        p.tun_id = ident


cdef int decode_udp_tunnel(const uint8_t* d, Py_ssize_t n, Pkt* p, int depth) noexcept nogil:
    """A UDP datagram (d: its header): VXLAN or Geneve inside, or not TCP at all."""
    cdef uint16_t dport
    cdef Py_ssize_t off
    cdef uint16_t ptype
    if n < 8:
        return PKT_TRUNCATED
    dport = be16(d + 2)
    if dport == 4789 or dport == 8472:
        # VXLAN (RFC 7348): flags (I = 0x08: the VNI is valid), 3 reserved, VNI, 1 reserved
        if n < 16:
            return PKT_TRUNCATED
        if not (d[8] & 0x08):
            return PKT_NOT_TCP
        tunnel(p, TUN_VXLAN, (<uint32_t>d[12] << 16) | (<uint32_t>d[13] << 8) | d[14])
        return decode_ether(d + 16, n - 16, 0x6558, p, depth + 1)
    if dport == 6081:
        # Geneve (RFC 8926): version and option length (4-byte words), flags, protocol, VNI
        if n < 16:
            return PKT_TRUNCATED
        if (d[8] >> 6) != 0:
            return PKT_NOT_TCP
        off = 16 + (d[8] & 0x3f) * 4
        if off > n:
            return PKT_TRUNCATED
        ptype = be16(d + 10)
        tunnel(p, TUN_GENEVE, (<uint32_t>d[12] << 16) | (<uint32_t>d[13] << 8) | d[14])
        return decode_ether(d + off, n - off, ptype, p, depth + 1)
    return PKT_NOT_TCP


cdef int decode_gre(const uint8_t* d, Py_ssize_t n, Pkt* p, int depth) noexcept nogil:
    """A GRE packet (RFC 2784/2890): IP, transparent Ethernet bridging or ERSPAN inside."""
    cdef uint16_t flags, ptype
    cdef Py_ssize_t off = 4
    cdef uint32_t key = 0
    cdef int kind = TUN_GRE
    if n < 4:
        return PKT_TRUNCATED
    flags = be16(d)
    if (flags & 7) != 0 or (flags & 0x4000):
        return PKT_NOT_TCP        # version 1 is PPTP's enhanced GRE; routing present is obsolete
    ptype = be16(d + 2)
    if flags & 0x8000:
        off += 4                  # checksum and reserved
    if flags & 0x2000:
        if off + 4 > n:
            return PKT_TRUNCATED
        key = be32(d + off)
        off += 4
    if flags & 0x1000:
        off += 4                  # sequence number
    if off > n:
        return PKT_TRUNCATED
    if ptype == 0x88be:
        kind = TUN_ERSPAN
        if flags & 0x1000:
            # type II: version/VLAN, COS/En/T/session id, reserved/index
            if off + 8 > n:
                return PKT_TRUNCATED
            key = be16(d + off + 2) & 0x3ff
            off += 8
        # type I (no sequence number): the mirrored frame follows the GRE header at once
        ptype = 0x6558
    elif ptype == 0x22eb:
        # ERSPAN type III: 12-byte header, then an 8-byte platform subheader when O is set
        kind = TUN_ERSPAN
        if off + 12 > n:
            return PKT_TRUNCATED
        key = be16(d + off + 2) & 0x3ff
        off += 20 if (d[off + 11] & 1) else 12
        if off > n:
            return PKT_TRUNCATED
        ptype = 0x6558
    tunnel(p, kind, key)
    return decode_ether(d + off, n - off, ptype, p, depth + 1)


cdef int decode_ip(const uint8_t* d, Py_ssize_t n, Pkt* p, int depth) noexcept nogil:
    """IPv4/IPv6 + TCP header decoding into p, through tunnels; returns the status."""
    cdef int ver, ihl, doff, nh, hlen
    cdef Py_ssize_t total, off, l4_claimed, l4_cap
    cdef uint16_t frag
    cdef const uint8_t* l4
    if n < 1:
        return PKT_TRUNCATED
    ver = d[0] >> 4
    if ver == 4:
        if n < 20:
            return PKT_TRUNCATED
        ihl = (d[0] & 15) * 4
        if ihl < 20:
            return PKT_BAD_HEADER
        total = be16(d + 2)
        if total == 0:
            # TCP segmentation offload on the capturing host leaves the length at 0.
            total = n
        if total < ihl:
            return PKT_BAD_HEADER
        if n < ihl:
            return PKT_TRUNCATED
        frag = be16(d + 6)
        if (frag & 0x3fff) != 0:
            return PKT_FRAGMENT
        if d[9] != 6:
            return decode_inner(d + ihl, (n if n < total else total) - ihl, d[9], p, depth)
        p.af = 4
        memset(p.src, 0, 16)
        memset(p.dst, 0, 16)
        memcpy(p.src, d + 12, 4)
        memcpy(p.dst, d + 16, 4)
        p.ip_len = <int32_t>total
        p.ttl = d[8]
        p.ip_id = be16(d + 4)
        off = ihl
    elif ver == 6:
        if n < 40:
            return PKT_TRUNCATED
        total = 40 + <Py_ssize_t>be16(d + 4)
        if total == 40 and n > 40:
            total = n   # jumbogram or offload: trust the capture
        nh = d[6]
        off = 40
        while nh == 0 or nh == 43 or nh == 60 or nh == 44 or nh == 51 or nh == 135 or nh == 139 or nh == 140:
            if off + 8 > n or off + 8 > total:
                return PKT_TRUNCATED
            if nh == 44:
                if (be16(d + off + 2) & 0xfff9) != 0:
                    return PKT_FRAGMENT
                hlen = 8
            elif nh == 51:
                hlen = (d[off + 1] + 2) * 4
            else:
                hlen = (d[off + 1] + 1) * 8
            nh = d[off]
            off += hlen
        if off > total:
            return PKT_BAD_HEADER
        if nh != 6:
            return decode_inner(d + off, (n if n < total else total) - off, nh, p, depth)
        p.af = 6
        memcpy(p.src, d + 8, 16)
        memcpy(p.dst, d + 24, 16)
        p.ip_len = <int32_t>total
        p.ttl = d[7]
        p.ip_id = -1
    else:
        return PKT_NOT_IP
    # TCP
    l4 = d + off
    l4_claimed = total - off
    l4_cap = (n if n < total else total) - off
    if l4_cap < 20:
        return PKT_TRUNCATED if l4_claimed >= 20 else PKT_BAD_HEADER
    doff = (l4[12] >> 4) * 4
    if doff < 20 or doff > l4_claimed:
        return PKT_BAD_HEADER
    if l4_cap < doff:
        return PKT_TRUNCATED
    p.sport = be16(l4)
    p.dport = be16(l4 + 2)
    p.seq = be32(l4 + 4)
    p.ack = be32(l4 + 8)
    p.flags = ((l4[12] & 1) << 8) | l4[13]
    p.win = be16(l4 + 14)
    p.tcp_len = <int32_t>(l4_claimed - doff)
    p.cap_len = <int32_t>(l4_cap - doff)
    if p.cap_len > p.tcp_len:
        p.cap_len = p.tcp_len
    p.payload = l4 + doff
    return PKT_TCP


cdef int decode_inner(const uint8_t* d, Py_ssize_t n, int proto, Pkt* p, int depth) noexcept nogil:
    """What an IP packet that is not TCP carries: a tunnel to look into, or nothing for us."""
    if depth >= MAX_NESTING:
        return PKT_NOT_TCP
    if proto == 4 or proto == 41:
        tunnel(p, TUN_IPIP, 0)
        return decode_ip(d, n, p, depth + 1)
    if proto == 47:
        return decode_gre(d, n, p, depth)
    if proto == 17:
        return decode_udp_tunnel(d, n, p, depth)
    return PKT_NOT_TCP


cdef int decode_ether(const uint8_t* d, Py_ssize_t n, int et, Pkt* p, int depth) noexcept nogil:
    """A tunnel's payload of EtherType ``et``: an Ethernet frame (0x6558) or IP (the depth is
    bounded where the next IP layer looks for a tunnel, in decode_inner)."""
    if et == 0x6558:
        if n < 14:
            return PKT_TRUNCATED
        return decode_ethertype(d + 14, n - 14, be16(d + 12), p, depth)
    return decode_ethertype(d, n, et, p, depth)


cdef int decode_ethertype(const uint8_t* d, Py_ssize_t n, int et, Pkt* p, int depth) noexcept nogil:
    """Payload of EtherType ``et``: peel VLAN tags, MPLS labels and PPPoE, then IP."""
    cdef Py_ssize_t off = 0
    cdef uint16_t tlen
    while True:
        if et == 0x8100 or et == 0x88a8 or et == 0x9100 or et == 0x9200:
            if off + 4 > n:
                return PKT_TRUNCATED
            et = be16(d + off + 2)
            off += 4
        elif et == 0x8847 or et == 0x8848:
            while True:
                if off + 4 > n:
                    return PKT_TRUNCATED
                off += 4
                if d[off - 2] & 1:
                    break
            if off >= n:
                return PKT_TRUNCATED
            et = 0x0800 if (d[off] >> 4) == 4 else (0x86dd if (d[off] >> 4) == 6 else 0)
        elif et == 0x8864:
            if off + 8 > n:
                return PKT_TRUNCATED
            tlen = be16(d + off + 6)
            off += 8
            et = 0x0800 if tlen == 0x0021 else (0x86dd if tlen == 0x0057 else 0)
        else:
            break
    if et == 0x0800 or et == 0x86dd:
        return decode_ip(d + off, n - off, p, depth)
    return PKT_NOT_IP


cdef int decode_link(const uint8_t* d, Py_ssize_t n, int lt, Pkt* p) noexcept nogil:
    cdef Py_ssize_t off = 0
    cdef int et = -1
    cdef uint32_t af
    cdef uint16_t tlen, ttype
    p.tun_kind = TUN_NONE
    p.tun_id = 0
    if lt == 1:
        if n < 14:
            return PKT_TRUNCATED
        et = be16(d + 12)
        off = 14
    elif lt == 113:
        if n < 16:
            return PKT_TRUNCATED
        et = be16(d + 14)
        off = 16
    elif lt == 276:
        if n < 20:
            return PKT_TRUNCATED
        et = be16(d)
        off = 20
    elif lt == 101 or lt == 12 or lt == 14 or lt == 228 or lt == 229:
        return decode_ip(d, n, p, 0)
    elif lt == 0 or lt == 108:
        if n < 4:
            return PKT_TRUNCATED
        # NULL stores the address family in the writer's byte order; LOOP in network order.
        af = be32(d) if lt == 108 else le32(d)
        if lt == 0 and af > 0xffff:
            af = be32(d)
        if af == 2 or af == 10 or af == 24 or af == 28 or af == 30:
            return decode_ip(d + 4, n - 4, p, 0)
        return PKT_NOT_IP
    elif lt == 239:
        # NFLOG: 4-byte header then TLVs (host byte order lengths), payload is type 9.
        if n < 4:
            return PKT_TRUNCATED
        off = 4
        while off + 4 <= n:
            tlen = le16(d + off)
            ttype = le16(d + off + 2)
            if tlen < 4:
                return PKT_BAD_HEADER
            if ttype == 9:
                if off + tlen > n:
                    return decode_ip(d + off + 4, n - off - 4, p, 0)
                return decode_ip(d + off + 4, tlen - 4, p, 0)
            off += (tlen + 3) & ~3
        return PKT_NOT_IP
    else:
        return PKT_UNSUPPORTED_LINK
    return decode_ethertype(d + off, n - off, et, p, 0)


cdef class PacketSource:
    """Iterate the packets of one capture stream (see module docstring)."""

    def __cinit__(self):
        self._if_cap = 0
        self._if_lt = NULL
        self._if_div = NULL
        self._if_mul = NULL
        self._if_shift = NULL
        self._if_off = NULL

    def __dealloc__(self):
        free(self._if_lt)
        free(self._if_div)
        free(self._if_mul)
        free(self._if_shift)
        free(self._if_off)

    def __init__(self, fh, str name="capture"):
        self._fh = fh
        self._buf = bytearray(BUF_SIZE)
        self._cap = BUF_SIZE
        self._data = <uint8_t*> PyByteArray_AS_STRING(self._buf)
        self._pos = 0
        self._end = 0
        self._consumed = 0
        self._eof = False
        self._stop = False
        self._frame = 0
        self.frame_base = 0
        self._last_ts = 0
        self._n_if = 0
        self._lt_counts_py = {}
        self._last_lt = -1
        self._last_lt_n = 0
        memset(self._status_counts, 0, sizeof(self._status_counts))
        memset(self._tun_counts, 0, sizeof(self._tun_counts))
        self.info = {"name": name, "format": None, "warnings": [], "snaplen": None}
        self._open()

    # -- buffer -------------------------------------------------------------------------
    cdef int _fill(self, Py_ssize_t need) except -1:
        """Make `need` bytes available at _pos; 1 when they are, 0 at end of input."""
        cdef Py_ssize_t have = self._end - self._pos
        cdef Py_ssize_t got, newcap
        cdef bytearray nb
        if have >= need:
            return 1
        if self._eof:
            return 0
        if self._pos:
            memmove(self._data, self._data + self._pos, have)
        self._consumed += self._pos
        self._pos = 0
        self._end = have
        # readinto1 (one underlying read per call) where the stream has it: a gzip stream
        # that fails part-way would otherwise lose every byte of a large readinto.
        readinto = getattr(self._fh, "readinto1", None) or self._fh.readinto
        while self._end < need:
            if self._end == self._cap:
                # Grow with the bytes that actually arrive, not with what a record claims:
                # a record claiming 64 MiB in an 18 KB file costs no more than the first read.
                newcap = min(need + BUF_SIZE, 2 * self._cap + BUF_SIZE)
                nb = bytearray(newcap)
                memcpy(<uint8_t*> PyByteArray_AS_STRING(nb), self._data, self._end)
                self._buf = nb
                self._cap = newcap
                self._data = <uint8_t*> PyByteArray_AS_STRING(nb)
            mv = memoryview(self._buf)
            try:
                got = readinto(mv[self._end:self._cap])
            except (OSError, EOFError, ValueError, zlib.error) as exc:
                # gzip raises on a cut-off or corrupt stream (zlib.error for a damaged
                # deflate body): keep what was decoded.
                self._warn(f"input stream ended with an error after byte "
                           f"{self._consumed + self._end}: {exc}")
                got = 0
            mv.release()
            if not got:
                self._eof = True
                break
            self._end += got
        return 1 if self._end >= need else 0

    cdef void _warn(self, str msg):
        w = self.info["warnings"]
        if len(w) < 100:
            w.append(msg)

    cdef void _count_lt(self, int lt):
        if lt != self._last_lt:
            if self._last_lt_n:
                self._lt_counts_py[self._last_lt] = self._lt_counts_py.get(self._last_lt, 0) + self._last_lt_n
            self._last_lt = lt
            self._last_lt_n = 0
        self._last_lt_n += 1

    # -- headers ------------------------------------------------------------------------
    def _open(self):
        cdef uint32_t magic
        cdef const uint8_t* b
        if not self._fill(4):
            raise CaptureError("empty input: not a pcap or pcapng file")
        b = self._data + self._pos
        magic = le32(b)
        if magic == 0x0A0D0D0A:
            self._fmt = 2
            self.info["format"] = "pcapng"
            return
        if magic in (0xa1b2c3d4, 0xa1b23c4d, 0xa1b2cd34):
            self._be = False
        elif magic in (0xd4c3b2a1, 0x4d3cb2a1, 0x34cdb2a1):
            self._be = True
        else:
            raise CaptureError(
                f"not a pcap or pcapng file (first bytes {bytes(self._buf[self._pos:self._pos + 4]).hex()})")
        if not self._fill(24):
            raise CaptureError("truncated pcap file header")
        b = self._data + self._pos
        magic = rd32(b, self._be)
        self._fmt = 1
        self._ts_mult = 1 if magic == 0xa1b23c4d else 1000
        self._rec_extra = 8 if magic == 0xa1b2cd34 else 0
        self._snaplen = rd32(b + 16, self._be)
        self._linktype = rd32(b + 20, self._be) & 0xFFFF
        self.info["format"] = "pcap" + ("-ns" if self._ts_mult == 1 else "")
        self.info["snaplen"] = self._snaplen
        self._pos += 24

    # -- records ------------------------------------------------------------------------
    cdef int next_packet(self, Pkt* p) except -1:
        """Decode the next packet into p. Returns 1, or 0 at the end of the capture."""
        if self._stop:
            return 0
        if self._fmt == 1:
            return self._next_pcap(p)
        return self._next_pcapng(p)

    cdef int _next_pcap(self, Pkt* p) except -1:
        cdef const uint8_t* b
        cdef uint32_t caplen, sec, frac
        cdef Py_ssize_t hdr = 16 + self._rec_extra
        if not self._fill(hdr):
            if self._end > self._pos:
                self._warn(f"truncated record header after frame {self._frame} "
                           f"(byte offset {self._consumed + self._pos}); the rest is ignored")
            self._stop = True
            return 0
        b = self._data + self._pos
        sec = rd32(b, self._be)
        frac = rd32(b + 4, self._be)
        caplen = rd32(b + 8, self._be)
        if caplen > MAX_RECORD:
            self._warn(f"record {self._frame + 1} at byte offset {self._consumed + self._pos} claims "
                       f"{caplen} bytes: not a packet; the rest of the file is ignored")
            self._stop = True
            return 0
        if not self._fill(hdr + caplen):
            self._warn(f"record {self._frame + 1} at byte offset {self._consumed + self._pos} is cut off "
                       f"({self._end - self._pos - hdr} of {caplen} bytes); it is ignored")
            self._stop = True
            return 0
        b = self._data + self._pos
        self._frame += 1
        p.frame = self._frame + self.frame_base
        p.ts_ns = <int64_t>sec * 1000000000 + <int64_t>frac * self._ts_mult
        p.linktype = self._linktype
        p.status = decode_link(b + hdr, caplen, self._linktype, p)
        self._pos += hdr + caplen
        self._status_counts[p.status] += 1
        self._tun_counts[p.tun_kind] += 1
        self._last_ts = p.ts_ns
        self._count_lt(self._linktype)
        return 1

    cdef int _pcapng_shb(self, const uint8_t* b, Py_ssize_t blen) except -1:
        self._n_if = 0   # interface ids are per section
        return 0

    cdef int _pcapng_idb(self, const uint8_t* b, Py_ssize_t blen) except -1:
        cdef int i = self._n_if
        cdef Py_ssize_t o
        cdef uint16_t code, olen
        cdef uint8_t res
        cdef int64_t off_s = 0
        cdef int r = 6
        cdef bint binary = False
        if blen < 20:
            self._warn("pcapng interface block too short; ignored")
            return 0
        if i >= MAX_INTERFACES:
            msg = "more than 4096 interfaces in one pcapng section; extra ones ignored"
            w = self.info["warnings"]
            if not w or w[len(w) - 1] != msg:   # once, not once per extra interface
                self._warn(msg)
            return 0
        if i >= self._if_cap:
            self._if_cap = self._if_cap * 2 + 8
            self._if_lt = <int*> realloc(self._if_lt, self._if_cap * sizeof(int))
            self._if_div = <int64_t*> realloc(self._if_div, self._if_cap * sizeof(int64_t))
            self._if_mul = <int64_t*> realloc(self._if_mul, self._if_cap * sizeof(int64_t))
            self._if_shift = <int*> realloc(self._if_shift, self._if_cap * sizeof(int))
            self._if_off = <int64_t*> realloc(self._if_off, self._if_cap * sizeof(int64_t))
            if not (self._if_lt and self._if_div and self._if_mul and self._if_shift and self._if_off):
                raise MemoryError()
        self._if_lt[i] = rd16(b + 8, self._be)
        if self.info["snaplen"] is None:
            self.info["snaplen"] = rd32(b + 12, self._be)
        o = 16
        while o + 4 <= blen - 4:
            code = rd16(b + o, self._be)
            olen = rd16(b + o + 2, self._be)
            if code == 0 or o + 4 + olen > blen - 4:
                break
            if code == 9 and olen >= 1:
                res = b[o + 4]
                binary = (res & 0x80) != 0
                r = res & 0x7f
            elif code == 14 and olen >= 8:
                off_s = <int64_t>((<uint64_t>rd32(b + o + 4 + (0 if self._be else 4), self._be) << 32)
                                  | rd32(b + o + 4 + (4 if self._be else 0), self._be))
            o += 4 + ((olen + 3) & ~3)
        self._if_shift[i] = -1
        self._if_mul[i] = 1
        self._if_div[i] = 1
        if binary:
            self._if_shift[i] = r if r < 63 else 62
        elif r <= 9:
            self._if_mul[i] = pow10(9 - r)
        elif r <= 18:
            self._if_div[i] = pow10(r - 9)
        else:
            self._if_div[i] = pow10(9)
        self._if_off[i] = off_s * 1000000000
        self._n_if += 1
        return 0

    cdef int _next_pcapng(self, Pkt* p) except -1:
        cdef const uint8_t* b
        cdef uint32_t btype, blen, caplen, iface, tail
        cdef uint64_t ts
        cdef int shift
        cdef Py_ssize_t doff
        while True:
            if not self._fill(12):
                if self._end > self._pos:
                    self._warn(f"truncated pcapng block after frame {self._frame} "
                               f"(byte offset {self._consumed + self._pos}); the rest is ignored")
                self._stop = True
                return 0
            b = self._data + self._pos
            btype = rd32(b, self._be)
            if le32(b) == 0x0A0D0D0A:
                # The section header's byte-order magic decides how everything after it reads.
                if be32(b + 8) == 0x1A2B3C4D:
                    self._be = True
                elif le32(b + 8) == 0x1A2B3C4D:
                    self._be = False
                else:
                    self._warn(f"bad pcapng section header at byte offset {self._consumed + self._pos}; "
                               "the rest is ignored")
                    self._stop = True
                    return 0
                btype = 0x0A0D0D0A
            blen = rd32(b + 4, self._be)
            if blen < 12 or (blen & 3) or blen > MAX_RECORD:
                self._warn(f"pcapng block at byte offset {self._consumed + self._pos} has impossible "
                           f"length {blen}; the rest is ignored")
                self._stop = True
                return 0
            if not self._fill(blen):
                self._warn(f"pcapng block at byte offset {self._consumed + self._pos} is cut off "
                           f"({self._end - self._pos} of {blen} bytes); it is ignored")
                self._stop = True
                return 0
            b = self._data + self._pos
            tail = rd32(b + blen - 4, self._be)
            if tail != blen:
                self._warn(f"pcapng block at byte offset {self._consumed + self._pos}: trailing length "
                           f"{tail} != {blen}; the rest is ignored")
                self._stop = True
                return 0
            self._pos += blen
            if btype == 0x0A0D0D0A:
                self._pcapng_shb(b, blen)
                continue
            if btype == 1:
                self._pcapng_idb(b, blen)
                continue
            if btype == 6 or btype == 2:
                if blen < 32:
                    self._warn(f"short packet block at byte offset {self._consumed + self._pos - blen}; ignored")
                    continue
                if btype == 6:
                    iface = rd32(b + 8, self._be)
                else:
                    iface = rd16(b + 8, self._be)
                ts = (<uint64_t>rd32(b + 12, self._be) << 32) | rd32(b + 16, self._be)
                caplen = rd32(b + 20, self._be)
                doff = 28
                if caplen > blen - 32:
                    caplen = blen - 32
            elif btype == 3:
                if blen < 16:
                    continue
                iface = 0
                caplen = rd32(b + 8, self._be)
                if caplen > blen - 16:
                    caplen = blen - 16
                doff = 12
                ts = 0
            else:
                continue   # name resolution, statistics, custom blocks: not packets
            self._frame += 1
            p.frame = self._frame + self.frame_base
            if iface >= <uint32_t>self._n_if:
                p.status = PKT_UNSUPPORTED_LINK
                p.linktype = -1
                p.ts_ns = self._last_ts
                if self._status_counts[PKT_UNSUPPORTED_LINK] == 0:
                    self._warn(f"frame {self._frame} names interface {iface}, which was never described")
                self._status_counts[PKT_UNSUPPORTED_LINK] += 1
                return 1
            if btype == 3:
                # Simple packet blocks carry no timestamp: reuse the previous packet's.
                p.ts_ns = self._last_ts
            else:
                shift = self._if_shift[iface]
                if shift >= 0:
                    p.ts_ns = <int64_t>((ts >> shift) * 1000000000
                                        + (((ts & ((<uint64_t>1 << shift) - 1)) * 1000000000) >> shift)) \
                        if shift <= 30 else <int64_t>(<double>ts / (<double>(<uint64_t>1 << shift)) * 1e9)
                else:
                    p.ts_ns = <int64_t>(ts * self._if_mul[iface] // self._if_div[iface])
                p.ts_ns += self._if_off[iface]
                if p.ts_ns < 0 or p.ts_ns > MAX_TS_NS:
                    # a wrapped 64-bit timestamp or absurd if_tsoffset: keep every difference
                    # of two timestamps inside int64 (pandas raises on overflow)
                    p.ts_ns = 0 if p.ts_ns < 0 else MAX_TS_NS
                    msg = "pcapng timestamps out of range (before 1970 or after 2116) were clamped"
                    if msg not in self.info["warnings"]:
                        self._warn(msg)
            p.linktype = self._if_lt[iface]
            p.status = decode_link(b + doff, caplen, p.linktype, p)
            self._status_counts[p.status] += 1
            self._tun_counts[p.tun_kind] += 1
            self._last_ts = p.ts_ns
            self._count_lt(p.linktype)
            return 1

    # -- Python-level access (tests, slow paths) ------------------------------------------
    def facts(self) -> dict:
        """File facts so far: format, link types, packet counts by status, warnings."""
        lt = dict(self._lt_counts_py)
        if self._last_lt_n:
            lt[self._last_lt] = lt.get(self._last_lt, 0) + self._last_lt_n
        info = dict(self.info)
        info["packets"] = self._frame
        info["linktypes"] = {LINKTYPE_NAMES.get(k, str(k)) if k >= 0 else "unknown": v for k, v in lt.items()}
        info["status_counts"] = {STATUS_NAMES[i]: self._status_counts[i]
                                 for i in range(PKT_NSTATUS) if self._status_counts[i]}
        info["tunnels"] = {TUNNEL_NAMES[i]: self._tun_counts[i] for i in range(1, TUN_NKINDS) if self._tun_counts[i]}
        info["bytes_read"] = self._consumed + self._pos
        return info

    def packets(self):
        """Yield each packet as a dict. Slow: for tests and debugging only."""
        cdef Pkt p
        while self.next_packet(&p):
            d = {"frame": p.frame, "ts_ns": p.ts_ns, "status": STATUS_NAMES[p.status],
                 "linktype": p.linktype}
            if p.status == PKT_TCP:
                n = 4 if p.af == 4 else 16
                d.update(af=p.af, src=bytes(p.src[:n]), dst=bytes(p.dst[:n]), sport=p.sport,
                         dport=p.dport, seq=p.seq, ack=p.ack, flags=p.flags, win=p.win,
                         ip_len=p.ip_len, tcp_len=p.tcp_len, tunnel=TUNNEL_NAMES[p.tun_kind] if p.tun_kind else None,
                         tunnel_id=p.tun_id if p.tun_kind else None,
                         payload=bytes(p.payload[:p.cap_len]))
            yield d
