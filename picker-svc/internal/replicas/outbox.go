package replicas

import (
	"sync"
	"time"
)

// outbox holds this replica's picks and ends until the next flush, within
// a byte budget: past it the oldest go first (a peer that misses a pick
// counts it only from its pod's next scrape; better than unbounded memory
// when the network stalls).
type outbox struct {
	max  int
	wake chan struct{} // one token: something waits to be sent

	mu      sync.Mutex
	picks   []queuedPick
	ends    []uint64
	bytes   int
	dropped int // since the last take
}

type queuedPick struct {
	p    wirePick
	at   time.Time
	size int // pickSizeBound
}

const endSize = 9

func newOutbox(maxBytes int) *outbox {
	return &outbox{max: maxBytes, wake: make(chan struct{}, 1)}
}

func (o *outbox) signal() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

func (o *outbox) addPick(p wirePick, at time.Time) {
	q := queuedPick{p: p, at: at, size: pickSizeBound(&p)}
	o.mu.Lock()
	o.picks = append(o.picks, q)
	o.bytes += q.size
	o.trimLocked()
	o.mu.Unlock()
	o.signal()
}

func (o *outbox) addEnds(ids []uint64) {
	o.mu.Lock()
	o.ends = append(o.ends, ids...)
	o.bytes += endSize * len(ids)
	o.trimLocked()
	o.mu.Unlock()
	o.signal()
}

// trimLocked drops the oldest picks, then the oldest ends, past the budget.
func (o *outbox) trimLocked() {
	for o.bytes > o.max && len(o.picks) > 0 {
		o.bytes -= o.picks[0].size
		o.picks[0] = queuedPick{}
		o.picks = o.picks[1:]
		o.dropped++
	}
	if k := (o.bytes - o.max + endSize - 1) / endSize; k > 0 {
		k = min(k, len(o.ends))
		o.ends = o.ends[k:]
		o.bytes -= k * endSize
		o.dropped += k
	}
}

// take empties the outbox; dropped is what trimming lost since the last take.
func (o *outbox) take() (picks []queuedPick, ends []uint64, dropped int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	picks, ends, dropped = o.picks, o.ends, o.dropped
	o.picks, o.ends, o.bytes, o.dropped = nil, nil, 0, 0
	return picks, ends, dropped
}

// message is one encoded batch; tcp when it does not fit a packet.
type message struct {
	data []byte
	tcp  bool
	// picks and ends it carries (the metrics).
	picks, ends int
}

// pack groups picks and ends into batches: small ones fill packets up to
// maxPacket bytes (sent over UDP), picks too large for a packet go in TCP
// messages of up to maxMessage bytes. next numbers UDP batches.
func pack(from string, picks []queuedPick, ends []uint64, now time.Time, maxPacket, maxMessage int, next func() uint64) ([]message, error) {
	var out []message
	over := batchOverhead(from)
	emit := func(b *wireBatch, tcp bool) error {
		if len(b.Picks) == 0 && len(b.Ends) == 0 {
			return nil
		}
		if !tcp {
			b.Seq = next()
		}
		b.From, b.SentAt = from, now.UnixNano()
		data, err := encode(nil, kindBatch, b)
		if err != nil {
			return err
		}
		out = append(out, message{data: data, tcp: tcp, picks: len(b.Picks), ends: len(b.Ends)})
		return nil
	}
	var udp, tcp wireBatch
	udpSize, tcpSize := over, over
	for i := range picks {
		q := &picks[i]
		q.p.AgeUS = uint32(min(max(now.Sub(q.at).Microseconds(), 0), 1<<32-1))
		if over+q.size > maxPacket {
			if tcpSize+q.size > maxMessage {
				if err := emit(&tcp, true); err != nil {
					return nil, err
				}
				tcp, tcpSize = wireBatch{}, over
			}
			tcp.Picks = append(tcp.Picks, q.p)
			tcpSize += q.size
			continue
		}
		if udpSize+q.size > maxPacket {
			if err := emit(&udp, false); err != nil {
				return nil, err
			}
			udp, udpSize = wireBatch{}, over
		}
		udp.Picks = append(udp.Picks, q.p)
		udpSize += q.size
	}
	for len(ends) > 0 {
		room := (maxPacket - udpSize) / endSize
		if room <= 0 {
			if err := emit(&udp, false); err != nil {
				return nil, err
			}
			udp, udpSize = wireBatch{}, over
			continue
		}
		k := min(room, len(ends))
		udp.Ends = append(udp.Ends, ends[:k]...)
		udpSize += k * endSize
		ends = ends[k:]
	}
	if err := emit(&udp, false); err != nil {
		return nil, err
	}
	if err := emit(&tcp, true); err != nil {
		return nil, err
	}
	return out, nil
}
