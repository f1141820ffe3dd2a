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
	"github.com/meshllm/meshllm/picker-svc/internal/config"
	"github.com/meshllm/meshllm/picker-svc/internal/datastore"
	"github.com/meshllm/meshllm/picker-svc/internal/discovery"
	"github.com/meshllm/meshllm/picker-svc/internal/extproc"
	"github.com/meshllm/meshllm/picker-svc/internal/inference"
	"github.com/meshllm/meshllm/picker-svc/internal/resolve"
	"github.com/meshllm/meshllm/picker-svc/internal/scheduling"
	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
	"github.com/meshllm/meshllm/picker-svc/internal/server"
	"github.com/meshllm/meshllm/picker-svc/pickapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
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
}

// Run runs picker-svc until ctx ends, then shuts down gracefully.
func Run(ctx context.Context, o Options) error {
	if o.Getenv == nil {
		o.Getenv = func(string) string { return "" }
	}
	if o.Log == nil {
		o.Log = os.Stderr
	}
	cfg, err := config.Load(o.Args, o.Getenv)
	if err != nil {
		return err
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	log := slog.New(slog.NewJSONHandler(o.Log, &slog.HandlerOptions{Level: level}))

	schedCfg, err := cfg.SchedulingConfig()
	if err != nil {
		return err
	}
	if cfg.EPP != nil {
		for _, n := range cfg.EPP.Notes {
			log.Warn("EndpointPickerConfig: accepted, not applied", "what", n)
		}
	}
	var objs inference.Objects
	for _, f := range cfg.Objects {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		o, err := inference.ParseYAML(b)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		objs.Pools = append(objs.Pools, o.Pools...)
		objs.Models = append(objs.Models, o.Models...)
		objs.Objectives = append(objs.Objectives, o.Objectives...)
		objs.Rewrites = append(objs.Rewrites, o.Rewrites...)
	}

	var metrics *server.Metrics
	mgr := scrape.NewManager(scrape.Config{
		Interval: cfg.Scrape.Interval.Duration, Timeout: cfg.Scrape.Timeout.Duration, MaxPageBytes: cfg.Scrape.MaxPageBytes,
		StaleAfter: cfg.Scrape.StaleAfter.Duration, MaxFailures: cfg.Scrape.MaxFailures, Path: cfg.Scrape.Path, Engine: cfg.ScrapeEngine(),
		Logger: log, Observer: observer{&metrics},
	})
	defer mgr.Close()
	sched, err := scheduling.New(schedCfg)
	if err != nil {
		return err
	}
	store := datastore.New(mgr, log, sched.EndpointsRemoved)
	metrics = server.NewMetrics(store)

	src, err := source(&cfg, &objs, log)
	if err != nil {
		return err
	}
	if cfg.Discovery.Mode != "kubernetes" {
		store.ReplaceObjects(objs)
	}

	srv := server.New(store, resolve.New(nil), sched, metrics, log)
	hs := &http.Server{Addr: cfg.Listen, Handler: srv.Handler(), ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	errc := make(chan error, 3)
	var gs *grpc.Server
	if cfg.ExtProc.Listen != "" {
		mode, _ := extproc.ParseBodyMode(cfg.ExtProc.BodyMode) // validated with the config
		gln, err := net.Listen("tcp", cfg.ExtProc.Listen)
		if err != nil {
			ln.Close()
			return err
		}
		tlsCfg, err := extproc.ServerTLS(extproc.TLSMode(cfg.ExtProc.TLS), cfg.ExtProc.CertPath)
		if err != nil {
			ln.Close()
			gln.Close()
			return err
		}
		var opts []grpc.ServerOption
		if tlsCfg != nil {
			opts = append(opts, grpc.Creds(credentials.NewTLS(tlsCfg)))
		}
		gs = grpc.NewServer(opts...)
		extprocv3.RegisterExternalProcessorServer(gs, extproc.New(srv, extproc.Config{Pool: cfg.Discovery.Pool, Mode: mode,
			MaxBodyBytes: cfg.ExtProc.MaxBodyBytes}, log))
		if o.ExtProcReady != nil {
			o.ExtProcReady(gln.Addr())
		}
		go func() { errc <- gs.Serve(gln) }()
		log.Info("ext_proc endpoint picker listening", "listen", gln.Addr().String(), "tls", cfg.ExtProc.TLS)
	}
	if o.Ready != nil {
		o.Ready(ln.Addr())
	}
	go func() { errc <- src.Run(ctx, store) }()
	go func() {
		if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	log.Info("picker-svc started", "listen", ln.Addr().String(), "discovery", cfg.Discovery.Mode, "pools", len(objs.Pools), "models", len(objs.Models))

	select {
	case <-ctx.Done():
	case err = <-errc:
		if err != nil {
			log.Error("stopping", "err", err)
		}
	}
	// Graceful: stop accepting, let in-flight picks finish (they take
	// microseconds; 5 s is for slow clients), then stop the scrapers.
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if serr := hs.Shutdown(shutCtx); serr != nil {
		log.Warn("shutdown", "err", serr)
	}
	if gs != nil {
		// A stream lives as long as its HTTP request; stop waiting for
		// those at the same bound.
		stopped := make(chan struct{})
		go func() { gs.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-shutCtx.Done():
			gs.Stop()
		}
	}
	log.Info("picker-svc stopped")
	return err
}

type observer struct{ m **server.Metrics }

// ScrapeDone implements scrape.Observer (metrics are created after the
// manager, which the store needs first).
func (o observer) ScrapeDone(addr string, took time.Duration, r scrape.Reason) {
	if m := *o.m; m != nil {
		m.ScrapeDone(addr, took, r)
	}
}

// source builds the discovery source. For static and dns, the endpoints
// belong to --pool, or to the only pool in the objects, or to a pool
// synthesised from the flags when there are no objects (every model passes
// through).
func source(cfg *config.Config, objs *inference.Objects, log *slog.Logger) (discovery.Source, error) {
	d := &cfg.Discovery
	if d.Mode == "kubernetes" {
		return kubeSource(cfg, log)
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
		return &discovery.DNS{Pool: pool, Targets: d.DNS, Interval: d.DNSInterval.Duration, Logger: log}, nil
	}
	return discovery.NewStatic(pool, d.Endpoints)
}

func kubeSource(cfg *config.Config, log *slog.Logger) (discovery.Source, error) {
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
		ReadOnly: d.ReadOnly, Logger: log}
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
