package kvevents

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// zmtpGreeting is a ZMTP 3.1 greeting with the NULL mechanism.
func zmtpGreeting() []byte {
	g := make([]byte, 64)
	g[0], g[9], g[10], g[11] = 0xff, 0x7f, 3, 1
	copy(g[12:], "NULL")
	return g
}

func frame(flags byte, body []byte) []byte {
	if len(body) > 255 {
		return append(binary.BigEndian.AppendUint64([]byte{flags | 0x02}, uint64(len(body))), body...)
	}
	return append([]byte{flags, byte(len(body))}, body...)
}

func TestFrameGuardFollowsFraming(t *testing.T) {
	stream := zmtpGreeting()
	stream = append(stream, frame(0x04, []byte("\x05READY"))...)
	stream = append(stream, frame(0x01, []byte("kv@pod@m"))...)
	stream = append(stream, frame(0x01, make([]byte, 8))...)
	stream = append(stream, frame(0x00, make([]byte, 70_000))...)
	stream = append(stream, frame(0x00, nil)...)
	rng := rand.New(rand.NewPCG(3, 3))
	for range 50 {
		g := frameGuard{max: 1 << 20}
		for b := stream; len(b) > 0; {
			n := 1 + rng.IntN(min(len(b), 100))
			require.NoError(t, g.scan(b[:n]))
			b = b[n:]
		}
		assert.True(t, g.greeting == 0 && g.sizeLen == 0 && g.body == 0, "ends at a frame boundary: %+v", g)
	}
	g := frameGuard{max: 1 << 20}
	big := append(zmtpGreeting(), 0x02, 0, 0, 1, 0, 0, 0, 0, 0) // a frame of 1 TiB
	assert.ErrorIs(t, g.scan(big), errFrameTooBig)
}

// TestHostilePublisher: a peer that claims a 1 TiB frame right after the
// greeting costs a failed connection, not the picker (zmq4 alone would
// try to allocate the terabyte).
func TestHostilePublisher(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write(zmtpGreeting())
			_, _ = c.Write([]byte{0x06, 0, 0, 1, 0, 0, 0, 0, 0}) // a command frame of 1 TiB
			buf := make([]byte, 1024)
			for {
				if _, err := c.Read(buf); err != nil {
					break
				}
			}
			c.Close()
		}
	}()
	r := newRig(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Subscribe(ctx, Source{Pod: "pod", Endpoint: "tcp://" + ln.Addr().String()}, r.cfg)
	}()
	require.Eventually(t, func() bool { return testutil.ToFloat64(r.m.connectErrs) >= 3 }, deadline, time.Millisecond)
	cancel()
	<-done
	assert.False(t, r.ix.Ready("pod"))
}
