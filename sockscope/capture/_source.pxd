from libc.stdint cimport uint8_t, uint16_t, uint32_t, int32_t, int64_t, uint64_t

# Why a packet is (or is not) a usable TCP segment.
cdef enum:
    PKT_TCP = 0
    PKT_NOT_IP = 1          # ARP, LLDP, other link payloads
    PKT_NOT_TCP = 2         # UDP, ICMP, ...
    PKT_FRAGMENT = 3        # IP fragment (not reassembled)
    PKT_TRUNCATED = 4       # headers cut by the snap length
    PKT_BAD_HEADER = 5      # impossible IP/TCP header lengths
    PKT_UNSUPPORTED_LINK = 6
    PKT_NSTATUS = 7

# The tunnel a packet arrived in (the outermost one when they nest); 0: none.
cdef enum:
    TUN_NONE = 0
    TUN_VXLAN = 1           # UDP 4789, or Linux's old default 8472
    TUN_GENEVE = 2          # UDP 6081
    TUN_GRE = 3             # GRE carrying IP or Ethernet (transparent bridging)
    TUN_ERSPAN = 4          # GRE carrying ERSPAN type I, II or III
    TUN_IPIP = 5            # IPv4 or IPv6 inside IPv4 or IPv6 (IP-in-IP, 6in4, 4in6)
    TUN_NKINDS = 6

# One decoded packet. Lives on the C stack of the caller; `payload` points into the
# reader's buffer and is valid only until the next call to next_packet().
cdef struct Pkt:
    int64_t ts_ns
    int64_t frame
    int status
    int linktype
    uint8_t af
    uint8_t src[16]
    uint8_t dst[16]
    uint16_t sport
    uint16_t dport
    uint32_t seq
    uint32_t ack
    uint16_t flags
    uint16_t win
    int32_t ip_len          # IP total length (header + payload), as Zeek's *_ip_bytes
    int32_t tcp_len         # payload length claimed by the IP header
    int32_t cap_len         # payload bytes actually captured (<= tcp_len)
    uint8_t ttl             # IPv4 TTL / IPv6 hop limit: tells a sender's own packets from forged ones
    int32_t ip_id           # IPv4 identification; -1 for IPv6 (no such field)
    uint8_t tun_kind        # TUN_*: the outermost tunnel, or TUN_NONE
    uint32_t tun_id         # its VNI (VXLAN, Geneve), key (GRE), session id (ERSPAN); 0 when none
    const uint8_t* payload

cdef class PacketSource:
    cdef object _fh
    cdef bytearray _buf
    cdef uint8_t* _data
    cdef Py_ssize_t _pos
    cdef Py_ssize_t _end
    cdef Py_ssize_t _cap
    cdef int64_t _consumed
    cdef bint _eof
    cdef bint _stop
    cdef bint _be
    cdef int _rec_extra
    cdef int _fmt               # 1 pcap, 2 pcapng
    cdef int64_t _ts_mult       # pcap: ns per fractional unit
    cdef int _linktype          # pcap
    cdef uint32_t _snaplen
    cdef int64_t _frame
    cdef public int64_t frame_base     # frames of earlier files in a chain (rotated captures)
    cdef int64_t _last_ts
    # pcapng interface table (per section)
    cdef int _n_if
    cdef int _if_cap
    cdef int* _if_lt
    cdef int64_t* _if_div
    cdef int64_t* _if_mul
    cdef int* _if_shift
    cdef int64_t* _if_off
    cdef public object info
    cdef int64_t[PKT_NSTATUS] _status_counts
    cdef int64_t[TUN_NKINDS] _tun_counts
    cdef dict _lt_counts_py
    cdef int _last_lt
    cdef int64_t _last_lt_n

    cdef int _fill(self, Py_ssize_t need) except -1
    cdef int next_packet(self, Pkt* p) except -1
    cdef int _next_pcap(self, Pkt* p) except -1
    cdef int _next_pcapng(self, Pkt* p) except -1
    cdef int _pcapng_shb(self, const uint8_t* b, Py_ssize_t blen) except -1
    cdef int _pcapng_idb(self, const uint8_t* b, Py_ssize_t blen) except -1
    cdef void _count_lt(self, int lt)
    cdef void _warn(self, str msg)
