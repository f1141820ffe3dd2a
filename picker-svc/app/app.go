// Package app is picker-svc as a library: the binary (picker-svc/main.go)
// and in-process users (e2e tests, the demo) run the same code.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meshllm/meshllm/pickapi"
	"github.com/meshllm/meshllm/picker-svc/internal/config"
	"github.com/meshllm/meshllm/picker-svc/internal/datastore"
	"github.com/meshllm/meshllm/picker-svc/internal/decision"
	"github.com/meshllm/meshllm/picker-svc/internal/discovery"
	"github.com/meshllm/meshllm/picker-svc/internal/extproc"
	"github.com/meshllm/meshllm/picker-svc/internal/inference"
	"github.com/meshllm/meshllm/picker-svc/internal/replicas"
	"github.com/meshllm/meshllm/picker-svc/internal/resolve"
	"github.com/meshllm/meshllm/picker-svc/internal/scheduling"
	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
	"github.com/meshllm/meshllm/picker-svc/internal/server"
)

// Options run one picker.
type Options struct {
	Args   []string            // command-line flags
	Getenv func(string) string // environment (PICKER_*); nil: none
	Log    io.Writer           // structured logs; nil: os.Stderr
	Ready  func(addr net.Addr) // called once listening, with the bound address
	// ExtProcReady is called once the ext_proc listener (if configured)
	// is bound, before Ready.
	ExtProcReady func(addr net.Addr)

	// The typed way in, for in-process users (the local stack, the
	// benchmarks): each one set overrides the flag of the same meaning.
	Listen    string   // --listen
	Endpoints []string // --endpoints (static discovery)
	Pool      string   // --pool
	// Objects is InferencePool/InferenceModel YAML, read beside the files
	// --objects names.
	Objects       []byte
	ExtProcListen string // --ext-proc-listen
	ExtProcTLS    string // --ext-proc-tls
	// ReplicaListen and ReplicaPeers: --replica-listen, --replica-peers.
	ReplicaListen string
	ReplicaPeers  []string
	// ReplicaReady is called with the bound gossip address once the
	// replica listens (replica mode only), before Ready.
	ReplicaReady func(addr string)
}

// override applies the typed options over the flags.
func (o *Options) override(c *config.Config) {
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&c.Listen, o.Listen)
	set(&c.Discovery.Pool, o.Pool)
	set(&c.ExtProc.Listen, o.ExtProcListen)
	set(&c.ExtProc.TLS, o.ExtProcTLS)
	if len(o.Endpoints) > 0 {
		c.Discovery.Endpoints = o.Endpoints
	}
	set(&c.Replicas.Listen, o.ReplicaListen)
	if len(o.ReplicaPeers) > 0 {
		c.Replicas.Peers = o.ReplicaPeers
	}
}

// picker is one running picker-svc, built in Run's steps.
type picker struct {
	cfg     config.Config
	log     *slog.Logger
	objs    inference.Objects
	metrics *server.Metrics
	mgr     *scrape.Manager
	store   *datastore.Store
	decider *decision.Decider
	http    *http.Server
	grpc    *grpc.Server // nil: no ext_proc listener
	source  discovery.Source
	precise *precisePrefix    // nil: no profile routes precisely
	health  *discovery.Health // how current discovery is: readiness, metrics
	replica *replicas.Replica // nil: not in replica mode
}

// Run runs picker-svc until ctx ends, then shuts down gracefully.
func Run(ctx context.Context, o Options) error {
	p, err := configure(&o)
	if err != nil {
		return err
	}
	if err := p.build(); err != nil {
		return err
	}
	defer p.mgr.Close()
	ln, gln, err := p.listen()
	if err != nil {
		p.closeReplica()
		return err
	}
	if p.replica != nil && o.ReplicaReady != nil {
		o.ReplicaReady(p.replica.Addr())
	}
	if gln != nil && o.ExtProcReady != nil {
		o.ExtProcReady(gln.Addr())
	}
	if o.Ready != nil {
		o.Ready(ln.Addr())
	}
	err = p.serve(ctx, ln, gln)
	p.shutdown()
	return err
}

// configure reads the configuration, the log level and the objects.
func configure(o *Options) (*picker, error) {
	if o.Getenv == nil {
		o.Getenv = func(string) string { return "" }
	}
	if o.Log == nil {
		o.Log = os.Stderr
	}
	cfg, err := config.LoadWith(o.Args, o.Getenv, o.override)
	if err != nil {
		return nil, err
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	p := &picker{cfg: cfg, log: slog.New(slog.NewJSONHandler(o.Log, &slog.HandlerOptions{Level: level}))}
	if cfg.EPP != nil {
		for _, n := range cfg.EPP.Notes {
			p.log.Warn("EndpointPickerConfig: accepted, not applied", "what", n)
		}
	}
	for _, f := range cfg.Objects {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		if err := p.addObjects(b, f); err != nil {
			return nil, err
		}
	}
	if len(o.Objects) > 0 {
		if err := p.addObjects(o.Objects, "objects"); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func (p *picker) addObjects(b []byte, where string) error {
	o, err := inference.ParseYAML(b)
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	p.objs.Pools = append(p.objs.Pools, o.Pools...)
	p.objs.Models = append(p.objs.Models, o.Models...)
	p.objs.Objectives = append(p.objs.Objectives, o.Objectives...)
	p.objs.Rewrites = append(p.objs.Rewrites, o.Rewrites...)
	return nil
}

// build makes the parts, each from those before it: metrics, scrapers,
// scheduler, store, discovery, the decision.
func (p *picker) build() error {
	schedCfg, err := p.cfg.SchedulingConfig()
	if err != nil {
		return err
	}
	sched, err := scheduling.New(schedCfg)
	if err != nil {
		return err
	}
	sc := &p.cfg.Scrape
	p.metrics = server.NewMetrics()
	p.mgr = scrape.NewManager(scrape.Config{
		Interval: sc.Interval.Duration, Timeout: sc.Timeout.Duration, MaxPageBytes: sc.MaxPageBytes,
		StaleAfter: sc.StaleAfter.Duration, MaxFailures: sc.MaxFailures, Path: sc.Path, Engine: p.cfg.ScrapeEngine(),
		Logger: p.log, Observer: p.metrics,
	})
	p.store = datastore.New(p.mgr, p.log, sched.EndpointsRemoved)
	p.metrics.CollectEndpoints(p.store)
	p.health = discovery.NewHealth(p.log)
	p.metrics.Registry.MustRegister(p.health)
	p.buildPrecise(sched, schedCfg)
	if p.source, err = source(&p.cfg, &p.objs, p.log, p.health); err != nil {
		p.mgr.Close()
		return err
	}
	if p.cfg.Discovery.Mode != "kubernetes" {
		p.store.ReplaceObjects(p.objs)
	}
	p.decider = decision.New(p.store, resolve.New(nil), sched, decision.NewMetrics(p.metrics.Registry), p.log)
	srv := server.New(p.store, p.decider, p.metrics).WaitFor(p.health)
	if err := p.buildReplica(sched, srv); err != nil {
		p.mgr.Close()
		return err
	}
	p.http = &http.Server{Addr: p.cfg.Listen, Handler: srv.Handler(), ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	return nil
}

// listen binds the HTTP listener and, when configured, the ext_proc one.
func (p *picker) listen() (ln, gln net.Listener, err error) {
	ln, err = net.Listen("tcp", p.cfg.Listen)
	if err != nil {
		return nil, nil, err
	}
	ep := &p.cfg.ExtProc
	if ep.Listen == "" {
		return ln, nil, nil
	}
	mode, _ := extproc.ParseBodyMode(ep.BodyMode) // validated with the config
	tlsCfg, err := extproc.ServerTLS(extproc.TLSMode(ep.TLS), ep.CertPath)
	if err != nil {
		ln.Close()
		return nil, nil, err
	}
	if gln, err = net.Listen("tcp", ep.Listen); err != nil {
		ln.Close()
		return nil, nil, err
	}
	var opts []grpc.ServerOption
	if tlsCfg != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tlsCfg)))
	}
	p.grpc = grpc.NewServer(opts...)
	extprocv3.RegisterExternalProcessorServer(p.grpc, extproc.New(p.decider, extproc.Config{Pool: p.cfg.Discovery.Pool, Mode: mode,
		MaxBodyBytes: ep.MaxBodyBytes, ExplainHeader: ep.ExplainHeader}, p.log))
	return ln, gln, nil
}

// serve runs discovery and both listeners until ctx ends or one fails.
func (p *picker) serve(ctx context.Context, ln, gln net.Listener) error {
	errc := make(chan error, 3)
	if gln != nil {
		go func() { errc <- p.grpc.Serve(gln) }()
		p.log.Info("ext_proc endpoint picker listening", "listen", gln.Addr().String(), "tls", p.cfg.ExtProc.TLS)
	}
	go func() { errc <- p.source.Run(ctx, p.store) }()
	if err := p.runPrecise(ctx); err != nil {
		return err
	}
	if p.replica != nil {
		go p.replica.Run(ctx)
	}
	go func() {
		if err := p.http.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	p.log.Info("picker-svc started", "listen", ln.Addr().String(), "discovery", p.cfg.Discovery.Mode, "pools", len(p.objs.Pools), "models", len(p.objs.Models))
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		if err != nil {
			p.log.Error("stopping", "err", err)
		}
	}
	return err
}

// shutdown is graceful: stop accepting, let in-flight picks finish (they
// take microseconds; 5 s is for slow clients). The scrapers stop after.
func (p *picker) shutdown() {
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.http.Shutdown(shutCtx); err != nil {
		p.log.Warn("shutdown", "err", err)
	}
	if p.grpc != nil {
		// A stream lives as long as its HTTP request; stop waiting for
		// those at the same bound.
		stopped := make(chan struct{})
		go func() { p.grpc.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-shutCtx.Done():
			p.grpc.Stop()
		}
	}
	// Picks are over: send the last of them and leave the group, so that
	// peers stop waiting on this replica at once.
	p.closeReplica()
	p.log.Info("picker-svc stopped")
}

// source builds the discovery source. For static and dns, the endpoints
// belong to --pool, or to the only pool in the objects, or to a pool
// synthesised from the flags when there are no objects (every model passes
// through).
func source(cfg *config.Config, objs *inference.Objects, log *slog.Logger, health *discovery.Health) (discovery.Source, error) {
	d := &cfg.Discovery
	if d.Mode == "kubernetes" {
		return kubeSource(cfg, log, health)
	}
	pool := d.Pool
	switch {
	case pool == "" && len(objs.Pools) == 1:
		pool = objs.Pools[0].Name
	case pool == "" && len(objs.Pools) > 1:
		return nil, errors.New("several pools in the objects: name the one the endpoints belong to with --pool")
	case pool == "":
		pool = "default"
	}
	found := false
	for _, p := range objs.Pools {
		found = found || p.Name == pool
	}
	if !found {
		port := int32(8000)
		if len(d.Endpoints) > 0 {
			port = config.Port(d.Endpoints[0])
		}
		objs.Pools = append(objs.Pools, inference.Pool{Name: pool, TargetPort: port, Strategy: pickapi.Strategy(d.Strategy),
			Selector: map[string]string{}})
	}
	if d.Mode == "dns" {
		return &discovery.DNS{Pool: pool, Targets: d.DNS, Interval: d.DNSInterval.Duration, Logger: log, Health: health}, nil
	}
	return discovery.NewStatic(pool, d.Endpoints)
}

// kubeSource builds the kubernetes source. Nothing here talks to the API
// server: an API server away at start is waited for by the source, never
// fatal.
func kubeSource(cfg *config.Config, log *slog.Logger, health *discovery.Health) (discovery.Source, error) {
	d := &cfg.Discovery
	rc, err := clientcmd.BuildConfigFromFlags("", d.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubernetes config: %w", err)
	}
	kc, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	dc, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	k := &discovery.Kubernetes{Client: kc, Dynamic: dc, Namespace: d.Namespace, OnlyPool: d.Pool, Resync: d.Resync.Duration,
		ReadOnly: d.ReadOnly, RetryInitial: d.RetryInitial.Duration, RetryMax: d.RetryMax.Duration, Health: health, Logger: log}
	if err := kubeResources(cfg, k); err != nil {
		return nil, err
	}
	return k, nil
}

// kubeResources sets the resources k watches from the configured API
// versions ("" or "none" leaves an optional one unwatched).
func kubeResources(cfg *config.Config, k *discovery.Kubernetes) error {
	d := &cfg.Discovery
	pg, err := gvr(d.PoolAPI, "inferencepools")
	if err != nil {
		return fmt.Errorf("poolAPI: %w", err)
	}
	k.PoolGVR = pg
	for _, opt := range []struct {
		key, apiVersion, resource string
		dst                       **schema.GroupVersionResource
	}{
		{"modelAPI", d.ModelAPI, "inferencemodels", &k.ModelGVR},
		{"objectiveAPI", d.ObjectiveAPI, "inferenceobjectives", &k.ObjectiveGVR},
		{"rewriteAPI", d.RewriteAPI, "inferencemodelrewrites", &k.RewriteGVR},
	} {
		if opt.apiVersion == "" || opt.apiVersion == "none" {
			continue
		}
		g, err := gvr(opt.apiVersion, opt.resource)
		if err != nil {
			return fmt.Errorf("%s: %w", opt.key, err)
		}
		*opt.dst = &g
	}
	return nil
}

func gvr(apiVersion, resource string) (schema.GroupVersionResource, error) {
	g, v, ok := strings.Cut(apiVersion, "/")
	if !ok || g == "" || v == "" || strings.Contains(v, "/") {
		return schema.GroupVersionResource{}, fmt.Errorf("api version %q: want group/version", apiVersion)
	}
	return schema.GroupVersionResource{Group: g, Version: v, Resource: resource}, nil
}
