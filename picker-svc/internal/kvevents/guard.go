package kvevents

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/go-zeromq/zmq4"
	"github.com/go-zeromq/zmq4/transport"
)

// go-zeromq/zmq4 allocates each incoming frame at the size its header
// claims before reading it, so a broken or hostile publisher could make
// the picker allocate gigabytes (or crash it) with one header. Every TCP
// connection of this package therefore goes through frameGuard, which
// reads ZMTP 3 framing as bytes pass (a 64-byte greeting, then frames of a
// flags byte, a 1- or 8-byte big-endian size and the body) and breaks the
// connection at a frame over maxFrameBytes.

// maxFrameBytes bounds one frame: the largest payload the decoder takes
// and room for the rest.
const maxFrameBytes = MaxPayloadBytes + 1<<10

const guardedScheme = "kvevents-tcp"

var errFrameTooBig = errors.New("kvevents: ZeroMQ frame over the size limit")

func init() {
	if err := zmq4.RegisterTransport(guardedScheme, guardedTransport{}); err != nil {
		panic(err)
	}
}

// guarded rewrites a tcp:// endpoint to the guarded transport.
func guarded(endpoint string) string {
	if rest, ok := strings.CutPrefix(endpoint, "tcp://"); ok {
		return guardedScheme + "://" + rest
	}
	return endpoint // ipc and inproc peers are local processes
}

type guardedTransport struct{}

var plainTCP = transport.New("tcp")

func (guardedTransport) Dial(ctx context.Context, d transport.Dialer, addr string) (net.Conn, error) {
	c, err := plainTCP.Dial(ctx, d, addr)
	if err != nil {
		return nil, err
	}
	return &guardedConn{Conn: c, g: frameGuard{max: maxFrameBytes}}, nil
}

func (guardedTransport) Listen(ctx context.Context, addr string) (net.Listener, error) {
	l, err := plainTCP.Listen(ctx, addr)
	if err != nil {
		return nil, err
	}
	return guardedListener{l}, nil
}

func (guardedTransport) Addr(ep string) (string, error) { return plainTCP.Addr(ep) }

type guardedListener struct{ net.Listener }

func (l guardedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &guardedConn{Conn: c, g: frameGuard{max: maxFrameBytes}}, nil
}

type guardedConn struct {
	net.Conn
	g frameGuard
}

func (c *guardedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if gerr := c.g.scan(p[:n]); gerr != nil {
		_ = c.Conn.Close()
		return 0, gerr
	}
	return n, err
}

// frameGuard follows ZMTP 3 framing over a byte stream in any chunks.
type frameGuard struct {
	max      uint64
	started  bool
	greeting int    // greeting bytes still to pass
	sizeLen  int    // size bytes of the current header still to read (0: next is a flags byte)
	size     uint64 // the size read so far
	body     uint64 // body bytes still to pass
}

const zmtpGreetingLen = 64

func (g *frameGuard) scan(b []byte) error {
	if !g.started {
		g.started, g.greeting = true, zmtpGreetingLen
	}
	for len(b) > 0 {
		switch {
		case g.greeting > 0:
			n := min(g.greeting, len(b))
			g.greeting -= n
			b = b[n:]
		case g.body > 0:
			n := min(g.body, uint64(len(b)))
			g.body -= n
			b = b[n:]
		case g.sizeLen > 0:
			g.size = g.size<<8 | uint64(b[0])
			g.sizeLen--
			b = b[1:]
			if g.sizeLen == 0 {
				if g.size > g.max {
					return fmt.Errorf("%w: %d bytes", errFrameTooBig, g.size)
				}
				g.body = g.size
			}
		default: // a flags byte: bit 1 says the size takes 8 bytes
			g.size, g.sizeLen = 0, 1
			if b[0]&0x02 != 0 {
				g.sizeLen = 8
			}
			b = b[1:]
		}
	}
	return nil
}
