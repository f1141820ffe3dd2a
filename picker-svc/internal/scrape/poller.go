package scrape

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshllm/meshllm/picker-svc/internal/capped"
)

// What a zero Config field takes. They are the one place these defaults are
// written: picker-svc's config starts from them.
const (
	DefaultInterval     = 50 * time.Millisecond
	DefaultTimeout      = time.Second
	DefaultMaxPageBytes = 1 << 20
	DefaultStaleAfter   = 2 * time.Second
	DefaultMaxFailures  = 3
	DefaultPath         = "/metrics"
	DefaultScheme       = "http"
)

// Config tunes every poller of a Manager. A zero field takes its Default*.
type Config struct {
	Interval     time.Duration // between scrapes of one endpoint
	Timeout      time.Duration // per scrape request
	MaxPageBytes int64         // larger pages are refused
	StaleAfter   time.Duration // a snapshot older than this is not eligible
	MaxFailures  int           // this many failures in a row make an endpoint ineligible
	Path         string
	Scheme       string
	// Engine is the metrics dialect of endpoints whose owner sets none
	// (Endpoint.SetEngine); zero means EngineAuto.
	Engine Engine
	// NewClient builds the HTTP client of one endpoint (tests inject one);
	// default: a client with its own small transport, so that removing an
	// endpoint closes its connections.
	NewClient func() *http.Client
	Now       func() time.Time
	Logger    *slog.Logger
	Observer  Observer
}

// Observer hears about every scrape (the server's Prometheus metrics).
type Observer interface {
	ScrapeDone(addr string, took time.Duration, reason Reason)
}

// Reason classifies a scrape's outcome; "" is success.
type Reason string

// Scrape outcomes other than success.
const (
	OK            Reason = ""
	ReasonConnect Reason = "connect"    // dial refused, reset before the status line
	ReasonTimeout Reason = "timeout"    // no full page within Config.Timeout (hanging endpoint)
	ReasonStatus  Reason = "status"     // non-200 answer
	ReasonTooBig  Reason = "too_large"  // page larger than MaxPageBytes
	ReasonRead    Reason = "read"       // body cut short (partial page)
	ReasonParse   Reason = "parse"      // junk that the parser rejects or bad values
	ReasonPartial Reason = "incomplete" // parses but lacks the core gauges
)

func (c *Config) withDefaults() Config {
	d := *c
	if d.Interval <= 0 {
		d.Interval = DefaultInterval
	}
	if d.Timeout <= 0 {
		d.Timeout = DefaultTimeout
	}
	if d.MaxPageBytes <= 0 {
		d.MaxPageBytes = DefaultMaxPageBytes
	}
	if d.StaleAfter <= 0 {
		d.StaleAfter = DefaultStaleAfter
	}
	if d.MaxFailures <= 0 {
		d.MaxFailures = DefaultMaxFailures
	}
	if d.Path == "" {
		d.Path = DefaultPath
	}
	if d.Scheme == "" {
		d.Scheme = DefaultScheme
	}
	if d.Engine == "" {
		d.Engine = EngineAuto
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.NewClient == nil {
		timeout := d.Timeout
		d.NewClient = func() *http.Client {
			return &http.Client{Transport: &http.Transport{
				DialContext:         (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext,
				MaxIdleConns:        2,
				MaxIdleConnsPerHost: 2,
				IdleConnTimeout:     90 * time.Second,
			}}
		}
	}
	return d
}

// Endpoint is one scraped model server. Its methods are safe for concurrent
// use; the scheduler reads it without locks.
type Endpoint struct {
	Addr string
	cfg  *Config
	url  string
	hc   *http.Client

	snap     atomic.Pointer[Snapshot]
	engine   atomic.Pointer[Engine] // nil: cfg.Engine
	failures atomic.Int32
	lastErr  atomic.Pointer[string]
	scrapes  atomic.Uint64
	// picks counts the picks that chose this endpoint first. It lives and
	// dies with the endpoint, so its series (meshllm_picker_endpoint_picks_total)
	// are bounded by the live endpoints, however many pods come and go.
	picks atomic.Uint64

	// reason is the last outcome, owned by the poller goroutine (log on change).
	reason  Reason
	started bool
	cancel  context.CancelFunc
	done    chan struct{}
}

func newEndpoint(addr string, cfg *Config) *Endpoint {
	return &Endpoint{Addr: addr, cfg: cfg, url: cfg.Scheme + "://" + addr + cfg.Path, hc: cfg.NewClient(), done: make(chan struct{})}
}

// CountPick counts one pick that chose the endpoint first.
func (e *Endpoint) CountPick() { e.picks.Add(1) }

// Picks is how many picks chose the endpoint first.
func (e *Endpoint) Picks() uint64 { return e.picks.Load() }

// Snapshot returns the last good snapshot, or nil before the first one.
func (e *Endpoint) Snapshot() *Snapshot { return e.snap.Load() }

// SetEngine sets the metrics dialect the endpoint's pages are read as, from
// the next scrape on; "" restores the Manager's Config.Engine.
func (e *Endpoint) SetEngine(engine Engine) {
	if engine == "" {
		e.engine.Store(nil)
		return
	}
	e.engine.Store(&engine)
}

// Engine is the dialect the endpoint's pages are read as (EngineAuto:
// detected on each page; the snapshot's Engine says what was found).
func (e *Endpoint) Engine() Engine {
	if p := e.engine.Load(); p != nil {
		return *p
	}
	return e.cfg.Engine
}

// Failures is the number of failed scrapes since the last good one.
func (e *Endpoint) Failures() int { return int(e.failures.Load()) }

// LastError describes the last failure ("" after a success).
func (e *Endpoint) LastError() string {
	if p := e.lastErr.Load(); p != nil {
		return *p
	}
	return ""
}

// Eligible reports whether the endpoint may be picked at now: it has a
// snapshot no older than StaleAfter and has not failed MaxFailures times in
// a row. It returns the snapshot it judged.
func (e *Endpoint) Eligible(now time.Time) (*Snapshot, bool) {
	s := e.snap.Load()
	if s == nil {
		return nil, false
	}
	if now.Sub(s.ScrapedAt) > e.cfg.StaleAfter || int(e.failures.Load()) >= e.cfg.MaxFailures {
		return s, false
	}
	return s, true
}

// Store publishes a snapshot (used by tests and benchmarks to set state
// without a server).
func (e *Endpoint) Store(s *Snapshot) { e.snap.Store(s); e.failures.Store(0) }

func (e *Endpoint) run(ctx context.Context) {
	defer close(e.done)
	t := time.NewTicker(e.cfg.Interval)
	defer t.Stop()
	for {
		e.ScrapeOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ScrapeOnce reads the page once, publishes a snapshot on success and
// returns the outcome.
func (e *Endpoint) ScrapeOnce(ctx context.Context) Reason {
	start := time.Now()
	s, reason, err := e.fetch(ctx)
	if ctx.Err() != nil && reason != OK {
		return reason // shutting down: not the endpoint's fault, do not count or log
	}
	e.scrapes.Add(1)
	if reason == OK {
		e.snap.Store(s)
		e.failures.Store(0)
		e.lastErr.Store(nil)
	} else {
		e.failures.Add(1)
		msg := err.Error()
		e.lastErr.Store(&msg)
	}
	if e.cfg.Observer != nil {
		e.cfg.Observer.ScrapeDone(e.Addr, time.Since(start), reason)
	}
	e.logTransition(reason, err)
	return reason
}

// logTransition logs once per change of outcome, so a dead endpoint scraped
// 20 times a second logs once, not 20 times a second.
func (e *Endpoint) logTransition(reason Reason, err error) {
	prev, first := e.reason, !e.started
	e.reason, e.started = reason, true
	switch {
	case reason == prev && !first:
	case reason == OK && first:
		e.cfg.Logger.Info("endpoint scraped", "endpoint", e.Addr)
	case reason == OK:
		e.cfg.Logger.Info("endpoint scrape recovered", "endpoint", e.Addr, "was", string(prev))
	default:
		e.cfg.Logger.Warn("endpoint scrape failing", "endpoint", e.Addr, "reason", string(reason), "err", err,
			"ineligible_after_failures", e.cfg.MaxFailures)
	}
}

var errTooBig = errors.New("page too large")

func (e *Endpoint) fetch(ctx context.Context) (*Snapshot, Reason, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.url, nil)
	if err != nil {
		return nil, ReasonConnect, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	requested := e.cfg.Now()
	resp, err := e.hc.Do(req)
	if err != nil {
		var ne net.Error
		if ctx.Err() != nil || (errors.As(err, &ne) && ne.Timeout()) {
			return nil, ReasonTimeout, fmt.Errorf("no answer within %v", e.cfg.Timeout)
		}
		return nil, ReasonConnect, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10)) // let the connection be reused
		return nil, ReasonStatus, fmt.Errorf("status %d", resp.StatusCode)
	}
	if resp.ContentLength > e.cfg.MaxPageBytes {
		return nil, ReasonTooBig, fmt.Errorf("%w: Content-Length %d > %d", errTooBig, resp.ContentLength, e.cfg.MaxPageBytes)
	}
	buf := getBuf()
	defer putBuf(buf)
	b, err := capped.ReadAll((*buf)[:0], resp.Body, e.cfg.MaxPageBytes)
	*buf = b
	switch {
	case errors.Is(err, capped.ErrTooLarge):
		return nil, ReasonTooBig, fmt.Errorf("%w: more than %d bytes", errTooBig, e.cfg.MaxPageBytes)
	case err != nil && ctx.Err() != nil:
		return nil, ReasonTimeout, fmt.Errorf("page not complete within %v", e.cfg.Timeout)
	case err != nil:
		return nil, ReasonRead, fmt.Errorf("reading page: %w", err)
	}
	s, err := Map(b, e.Engine(), e.cfg.Now())
	switch {
	case errors.Is(err, ErrIncomplete):
		return nil, ReasonPartial, err
	case err != nil:
		return nil, ReasonParse, err
	}
	s.RequestedAt = requested
	return &s, OK, nil
}

// Manager runs one poller per endpoint address. Several owners (pools) may
// share an address; it is scraped once and stopped when no owner holds it.
type Manager struct {
	cfg Config

	mu      sync.Mutex
	eps     map[string]*Endpoint
	owners  map[string]map[string]bool // owner -> addrs
	closed  bool
	baseCtx context.Context
	stopAll context.CancelFunc
}

// NewManager returns a Manager; pollers start on Set.
func NewManager(cfg Config) *Manager {
	ctx, cancel := context.WithCancel(context.Background())
	return &Manager{cfg: cfg.withDefaults(), eps: map[string]*Endpoint{}, owners: map[string]map[string]bool{}, baseCtx: ctx, stopAll: cancel}
}

// Config returns the effective configuration (defaults filled in).
func (m *Manager) Config() Config { return m.cfg }

// Set makes addrs the endpoints of owner, starting pollers for new addresses
// and stopping (and waiting for) pollers no owner holds any more. It returns
// owner's endpoints in the order of addrs (duplicates dropped).
func (m *Manager) Set(owner string, addrs []string) []*Endpoint {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	set := make(map[string]bool, len(addrs))
	out := make([]*Endpoint, 0, len(addrs))
	for _, a := range addrs {
		if set[a] {
			continue
		}
		set[a] = true
		e := m.eps[a]
		if e == nil {
			e = newEndpoint(a, &m.cfg)
			ctx, cancel := context.WithCancel(m.baseCtx)
			e.cancel = cancel
			m.eps[a] = e
			go e.run(ctx)
		}
		out = append(out, e)
	}
	if len(set) == 0 {
		delete(m.owners, owner)
	} else {
		m.owners[owner] = set
	}
	var stopped []*Endpoint
	for a, e := range m.eps {
		if !m.heldLocked(a) {
			delete(m.eps, a)
			e.cancel()
			stopped = append(stopped, e)
		}
	}
	m.mu.Unlock()
	for _, e := range stopped {
		<-e.done
		e.hc.CloseIdleConnections()
		m.cfg.Logger.Info("endpoint removed", "endpoint", e.Addr)
	}
	return out
}

func (m *Manager) heldLocked(addr string) bool {
	for _, set := range m.owners {
		if set[addr] {
			return true
		}
	}
	return false
}

// All returns every endpoint being scraped.
func (m *Manager) All() []*Endpoint {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*Endpoint, 0, len(m.eps))
	for _, e := range m.eps {
		out = append(out, e)
	}
	return out
}

// Close stops every poller and waits for them.
func (m *Manager) Close() {
	m.mu.Lock()
	m.closed = true
	eps := m.eps
	m.eps = map[string]*Endpoint{}
	m.owners = map[string]map[string]bool{}
	m.stopAll()
	m.mu.Unlock()
	for _, e := range eps {
		<-e.done
		e.hc.CloseIdleConnections()
	}
}

// NewEndpoint returns an endpoint that is not polled: state comes from Store
// or ScrapeOnce (tests, benchmarks, one-shot tools).
func NewEndpoint(addr string, cfg Config) *Endpoint {
	c := cfg.withDefaults()
	return newEndpoint(addr, &c)
}
