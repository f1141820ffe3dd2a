// Package config reads the picker's settings: defaults, then a YAML config
// file, then PICKER_* environment variables, then command-line flags (each
// overriding the one before).
package config

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/meshllm/meshllm/pickapi"
	"github.com/meshllm/meshllm/picker-svc/internal/scheduling"
	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
	"sigs.k8s.io/yaml"
)

// Duration reads "50ms"-style strings from YAML/JSON.
type Duration struct{ time.Duration }

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"50ms\": %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// Config is everything the picker can be told.
type Config struct {
	Listen string `json:"listen"`
	// ExtProc serves the endpoint-picker protocol (Envoy ext_proc gRPC)
	// for gateways whose InferencePool names this picker; off unless
	// Listen is set.
	ExtProc struct {
		Listen       string `json:"listen"`
		BodyMode     string `json:"bodyMode"` // full-duplex (default) or buffered, when the gateway does not say
		MaxBodyBytes int    `json:"maxBodyBytes"`
		// TLS: off (default), self-signed, or files (tls.crt and tls.key
		// in CertPath, re-read when rotated); a CertPath alone means files.
		TLS      string `json:"tls"`
		CertPath string `json:"certPath"`
		// ExplainHeader answers a request carrying x-meshllm-explain with
		// its pick's explanation in the x-meshllm-pick-explanation response
		// header (it shows the client the pool's endpoints and their load);
		// the explanation is in the access log's dynamic metadata
		// (meshllm:pick_explain) whatever this says.
		ExplainHeader bool `json:"explainHeader"`
	} `json:"extProc"`
	LogLevel  string   `json:"logLevel"`
	Objects   []string `json:"objects"` // YAML files with InferencePool / InferenceModel
	Discovery struct {
		Mode        string   `json:"mode"` // static, dns, kubernetes
		Pool        string   `json:"pool"`
		Strategy    string   `json:"strategy"` // for a pool synthesised when no objects are given
		Endpoints   []string `json:"endpoints"`
		DNS         []string `json:"dns"`
		DNSInterval Duration `json:"dnsInterval"`
		Namespace   string   `json:"namespace"`
		PoolAPI     string   `json:"poolAPI"`
		ModelAPI    string   `json:"modelAPI"`
		// ObjectiveAPI and RewriteAPI: the group/version of
		// InferenceObjective and InferenceModelRewrite ("none": not
		// watched; one the API server does not serve is skipped).
		ObjectiveAPI string `json:"objectiveAPI"`
		RewriteAPI   string `json:"rewriteAPI"`
		// ReadOnly: write no status conditions.
		ReadOnly   bool     `json:"readOnly"`
		Kubeconfig string   `json:"kubeconfig"`
		Resync     Duration `json:"resync"`
		// RetryInitial and RetryMax: the wait before another request to
		// the API server after one failed doubles from the one to the
		// other (0: 250ms and 2s). RetryMax bounds how far behind the
		// picker stays once the API server is back.
		RetryInitial Duration `json:"retryInitial"`
		RetryMax     Duration `json:"retryMax"`
	} `json:"discovery"`
	Scrape struct {
		Interval     Duration `json:"interval"`
		Timeout      Duration `json:"timeout"`
		MaxPageBytes int64    `json:"maxPageBytes"`
		StaleAfter   Duration `json:"staleAfter"`
		MaxFailures  int      `json:"maxFailures"`
		Path         string   `json:"path"`
		// Engine is the metrics dialect of pools whose InferencePool has no
		// meshllm.io/engine annotation: auto (detect per page), vllm,
		// sglang or triton-trtllm.
		Engine string `json:"engine"`
	} `json:"scrape"`
	Scheduling struct {
		// Profiles replace a strategy's whole profile; Weights then
		// overlay scorer weights on it (adding scorers it lacks).
		Profiles       map[string]scheduling.ProfileSpec `json:"profiles"`
		Weights        map[string]map[string]float64     `json:"weights"`
		Plugins        map[string]json.RawMessage        `json:"plugins"`
		ShedSheddable  *scheduling.Saturation            `json:"shedSheddable"`
		ShedStandard   *scheduling.Saturation            `json:"shedStandard"`
		Fallbacks      *int                              `json:"fallbacks"`
		PrefixCapacity int                               `json:"prefixCapacity"`
	} `json:"scheduling"`

	// KVEvents: following the engines' KV-cache events (PRECISE_PREFIX_CACHE).
	KVEvents KVEvents `json:"kvEvents"`
	// Replicas runs this picker as one of several active replicas that
	// share what they learn from picks (see replicas.go); off unless Listen
	// is set.
	Replicas ReplicaSettings `json:"replicas"`

	// EPP is the upstream EndpointPickerConfig read from --epp-config
	// (nil: none); Scheduling's keys refine what it sets.
	EPP *EPPConfig `json:"-"`
}

// Defaults returns the built-in settings.
func Defaults() Config {
	var c Config
	c.Listen = ":9002"
	c.LogLevel = "info"
	c.Discovery.Mode = "static"
	c.Discovery.Strategy = string(pickapi.DefaultStrategy)
	c.Discovery.DNSInterval.Duration = 5 * time.Second
	c.Discovery.PoolAPI = "inference.networking.x-k8s.io/v1alpha2"
	c.Discovery.ModelAPI = "inference.networking.x-k8s.io/v1alpha2"
	c.Discovery.ObjectiveAPI = "inference.networking.x-k8s.io/v1alpha2"
	c.Discovery.RewriteAPI = "inference.networking.x-k8s.io/v1alpha2"
	c.Discovery.Resync.Duration = 30 * time.Second
	c.Scrape.Interval.Duration = scrape.DefaultInterval
	c.Scrape.Timeout.Duration = scrape.DefaultTimeout
	c.Scrape.MaxPageBytes = scrape.DefaultMaxPageBytes
	c.Scrape.StaleAfter.Duration = scrape.DefaultStaleAfter
	c.Scrape.MaxFailures = scrape.DefaultMaxFailures
	c.Scrape.Path = scrape.DefaultPath
	c.Scrape.Engine = string(scrape.EngineAuto)
	c.Scheduling.PrefixCapacity = scheduling.DefaultPrefixCapacity
	kvEventsDefaults(&c.KVEvents)
	return c
}

// Scheduling returns the scheduler configuration (defaults overlaid).
func (c *Config) SchedulingConfig() (scheduling.Config, error) {
	sc := scheduling.DefaultConfig()
	sc.Plugins = map[string]json.RawMessage{}
	shedSheddable := c.Scheduling.ShedSheddable
	if e := c.EPP; e != nil {
		for st, p := range e.Profiles {
			sc.Profiles[st] = p
		}
		for n, raw := range e.Plugins {
			sc.Plugins[n] = raw
		}
		if e.Fallbacks != nil {
			sc.Fallbacks = *e.Fallbacks
		}
		if shedSheddable == nil && e.ShedSheddable != nil {
			shedSheddable = e.ShedSheddable
		}
	}
	for st, p := range c.Scheduling.Profiles {
		sc.Profiles[pickapi.Strategy(st)] = p
	}
	for st, ws := range c.Scheduling.Weights {
		p, ok := sc.Profiles[pickapi.Strategy(st)]
		if !ok {
			return sc, fmt.Errorf("weights: unknown strategy %q", st)
		}
		names := make([]string, 0, len(ws))
		for n := range ws {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			p = p.WithWeight(n, ws[n])
		}
		sc.Profiles[pickapi.Strategy(st)] = p
	}
	for n, raw := range c.Scheduling.Plugins {
		sc.Plugins[n] = raw
	}
	for st, p := range sc.Profiles {
		// precise_prefix refines the guess prefix writes: prefix runs first
		// (a weight alone, or a hand-written prepare list, may lack it).
		if slices.Contains(p.Prepare, scheduling.PrecisePrefixName) || p.Weight(scheduling.PrecisePrefixName) > 0 {
			p.Prepare = scheduling.PrecisePrefixPrepare(p.Prepare)
			sc.Profiles[st] = p
		}
	}
	if _, ok := sc.Plugins["prefix"]; !ok && uses(sc, "prefix") && c.Scheduling.PrefixCapacity != scheduling.DefaultPrefixCapacity && c.Scheduling.PrefixCapacity != 0 {
		sc.Plugins["prefix"] = json.RawMessage(fmt.Sprintf(`{"capacity":%d}`, c.Scheduling.PrefixCapacity))
	}
	if s := shedSheddable; s != nil {
		sc.ShedSheddable = *s
		// The capacity filter drops what Sheddable traffic would be shed at.
		if _, ok := sc.Plugins["capacity"]; !ok && uses(sc, "capacity") {
			sc.Plugins["capacity"] = json.RawMessage(fmt.Sprintf(`{"queue":%g,"kv":%g}`, s.Queue, s.KV))
		}
	}
	if s := c.Scheduling.ShedStandard; s != nil {
		sc.ShedStandard = *s
	}
	if c.Scheduling.Fallbacks != nil {
		sc.Fallbacks = *c.Scheduling.Fallbacks
	}
	return sc, sc.Validate()
}

// uses reports whether a profile of sc names plugin.
func uses(sc scheduling.Config, plugin string) bool {
	for _, p := range sc.Profiles {
		if slices.Contains(p.Filters, plugin) || slices.Contains(p.Prepare, plugin) || p.Weight(plugin) > 0 {
			return true
		}
	}
	return false
}

// Load builds the configuration from args (without the program name),
// getenv and the file the --config flag or PICKER_CONFIG names.
func Load(args []string, getenv func(string) string) (Config, error) {
	return LoadWith(args, getenv, nil)
}

// LoadWith is Load, with override applied last (over flags), before the
// result is validated: the typed way in for in-process users.
func LoadWith(args []string, getenv func(string) string, override func(*Config)) (Config, error) {
	c := Defaults()
	fs := flag.NewFlagSet("picker-svc", flag.ContinueOnError)
	configFile := fs.String("config", getenv("PICKER_CONFIG"), "YAML config file (env PICKER_CONFIG)")
	eppFile := fs.String("epp-config", getenv("PICKER_EPP_CONFIG"), "upstream EndpointPickerConfig file (YAML or JSON) for the scheduling profiles; the config file's scheduling keys refine it (env PICKER_EPP_CONFIG)")
	listen := fs.String("listen", "", "listen address (env PICKER_LISTEN; default :9002)")
	extProcListen := fs.String("ext-proc-listen", "", "serve the endpoint-picker protocol (Envoy ext_proc gRPC) here, e.g. :9004 (env PICKER_EXT_PROC_LISTEN; default off)")
	extProcMode := fs.String("ext-proc-body-mode", "", "request body mode of the gateway's ext_proc filter when it does not say: full-duplex or buffered (env PICKER_EXT_PROC_BODY_MODE; default full-duplex)")
	extProcTLS := fs.String("ext-proc-tls", "", "ext_proc listener TLS: off, self-signed, or files (env PICKER_EXT_PROC_TLS; default off, or files with --ext-proc-cert-path)")
	extProcCerts := fs.String("ext-proc-cert-path", "", "directory holding tls.crt and tls.key for the ext_proc listener, re-read when they change (env PICKER_EXT_PROC_CERT_PATH)")
	logLevel := fs.String("log-level", "", "debug, info, warn or error (env PICKER_LOG_LEVEL)")
	objects := fs.String("objects", "", "comma-separated YAML files with InferencePool/InferenceModel objects (env PICKER_OBJECTS)")
	mode := fs.String("discovery", "", "static, dns or kubernetes (env PICKER_DISCOVERY; default static)")
	pool := fs.String("pool", "", "pool the static/dns endpoints belong to; in kubernetes mode, watch only this pool (env PICKER_POOL)")
	strategy := fs.String("strategy", "", pickapi.StrategyList()+" for a pool synthesised when no objects are given (env PICKER_STRATEGY)")
	endpoints := fs.String("endpoints", "", "static mode: comma-separated ip:port list (env PICKER_ENDPOINTS)")
	dns := fs.String("dns", "", "dns mode: comma-separated host:port names, resolved periodically (env PICKER_DNS)")
	namespace := fs.String("namespace", "", "kubernetes mode: namespace to watch (env PICKER_NAMESPACE, else POD_NAMESPACE)")
	kubeconfig := fs.String("kubeconfig", "", "kubernetes mode: kubeconfig file; empty means in-cluster (env KUBECONFIG)")
	interval := fs.Duration("scrape-interval", 0, "time between scrapes of one endpoint (env PICKER_SCRAPE_INTERVAL; default "+scrape.DefaultInterval.String()+")")
	timeout := fs.Duration("scrape-timeout", 0, "timeout of one scrape (env PICKER_SCRAPE_TIMEOUT; default "+scrape.DefaultTimeout.String()+")")
	engine := fs.String("engine", "", "metrics dialect of pools without a meshllm.io/engine annotation: auto, vllm, sglang or triton-trtllm (env PICKER_ENGINE; default auto)")
	replicaListen := fs.String("replica-listen", "", "run as one of several picker replicas: gossip (TCP and UDP) on this address, e.g. :7946 (env PICKER_REPLICA_LISTEN; default off)")
	replicaAdvertise := fs.String("replica-advertise", "", "address peers reach this replica at, ip or ip:port (env PICKER_REPLICA_ADVERTISE; default: the listen address, or the first private IP)")
	replicaPeers := fs.String("replica-peers", "", "comma-separated host:port of peer replicas: IPs or DNS names, every address of a name being a peer (a headless Service) (env PICKER_REPLICA_PEERS)")
	replicaService := fs.String("replica-service", "", "Service in the namespace whose EndpointSlices list the peer replicas (env PICKER_REPLICA_SERVICE)")
	replicaKey := fs.String("replica-secret-key-file", "", "file holding a base64 key of 16, 24 or 32 bytes that encrypts gossip (env PICKER_REPLICA_SECRET_KEY_FILE)")
	stale := fs.Duration("stale-after", 0, "metrics older than this make an endpoint ineligible (env PICKER_STALE_AFTER; default "+scrape.DefaultStaleAfter.String()+")")
	applyKVEvents := kvEventsFlags(fs)
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	fileKVKeys := map[string]bool{}
	if *configFile != "" {
		b, err := os.ReadFile(*configFile)
		if err != nil {
			return c, err
		}
		if err := yaml.UnmarshalStrict(b, &c); err != nil {
			return c, fmt.Errorf("config file %s: %w", *configFile, err)
		}
		fileKVKeys = kvEventsKeys(b)
	}
	if *eppFile != "" {
		b, err := os.ReadFile(*eppFile)
		if err != nil {
			return c, err
		}
		e, err := ParseEndpointPickerConfig(b)
		if err != nil {
			return c, fmt.Errorf("epp config %s: %w", *eppFile, err)
		}
		c.EPP = &e
		c.KVEvents.applyEPP(e.KVEvents, fileKVKeys)
	}
	// env, then flags: each set value overrides.
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	pick := func(flagName, env string, flagVal string, dst *string) {
		if set[flagName] {
			*dst = flagVal
		} else if v := getenv(env); v != "" {
			*dst = v
		}
	}
	pickList := func(flagName, env string, flagVal string, dst *[]string) {
		var s string
		pick(flagName, env, flagVal, &s)
		if s != "" {
			*dst = splitList(s)
		}
	}
	pickDur := func(flagName, env string, flagVal time.Duration, dst *Duration) error {
		if set[flagName] {
			dst.Duration = flagVal
		} else if v := getenv(env); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				return fmt.Errorf("%s: %w", env, err)
			}
			dst.Duration = d
		}
		return nil
	}
	pick("listen", "PICKER_LISTEN", *listen, &c.Listen)
	pick("ext-proc-listen", "PICKER_EXT_PROC_LISTEN", *extProcListen, &c.ExtProc.Listen)
	pick("ext-proc-body-mode", "PICKER_EXT_PROC_BODY_MODE", *extProcMode, &c.ExtProc.BodyMode)
	pick("ext-proc-tls", "PICKER_EXT_PROC_TLS", *extProcTLS, &c.ExtProc.TLS)
	pick("ext-proc-cert-path", "PICKER_EXT_PROC_CERT_PATH", *extProcCerts, &c.ExtProc.CertPath)
	if c.ExtProc.TLS == "" && c.ExtProc.CertPath != "" {
		c.ExtProc.TLS = "files"
	}
	pick("log-level", "PICKER_LOG_LEVEL", *logLevel, &c.LogLevel)
	pickList("objects", "PICKER_OBJECTS", *objects, &c.Objects)
	pick("discovery", "PICKER_DISCOVERY", *mode, &c.Discovery.Mode)
	pick("pool", "PICKER_POOL", *pool, &c.Discovery.Pool)
	pick("strategy", "PICKER_STRATEGY", *strategy, &c.Discovery.Strategy)
	pickList("endpoints", "PICKER_ENDPOINTS", *endpoints, &c.Discovery.Endpoints)
	pickList("dns", "PICKER_DNS", *dns, &c.Discovery.DNS)
	pick("namespace", "PICKER_NAMESPACE", *namespace, &c.Discovery.Namespace)
	if c.Discovery.Namespace == "" {
		c.Discovery.Namespace = getenv("POD_NAMESPACE")
	}
	pick("kubeconfig", "KUBECONFIG", *kubeconfig, &c.Discovery.Kubeconfig)
	pick("engine", "PICKER_ENGINE", *engine, &c.Scrape.Engine)
	pick("replica-listen", "PICKER_REPLICA_LISTEN", *replicaListen, &c.Replicas.Listen)
	pick("replica-advertise", "PICKER_REPLICA_ADVERTISE", *replicaAdvertise, &c.Replicas.Advertise)
	pickList("replica-peers", "PICKER_REPLICA_PEERS", *replicaPeers, &c.Replicas.Peers)
	pick("replica-service", "PICKER_REPLICA_SERVICE", *replicaService, &c.Replicas.KubernetesService)
	pick("replica-secret-key-file", "PICKER_REPLICA_SECRET_KEY_FILE", *replicaKey, &c.Replicas.SecretKeyFile)
	for _, e := range []error{
		pickDur("scrape-interval", "PICKER_SCRAPE_INTERVAL", *interval, &c.Scrape.Interval),
		pickDur("scrape-timeout", "PICKER_SCRAPE_TIMEOUT", *timeout, &c.Scrape.Timeout),
		pickDur("stale-after", "PICKER_STALE_AFTER", *stale, &c.Scrape.StaleAfter),
		applyKVEvents(&c, set, getenv),
	} {
		if e != nil {
			return c, e
		}
	}
	if override != nil {
		override(&c)
	}
	return c, c.validate()
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func (c *Config) validate() error {
	var errs []error
	switch c.ExtProc.BodyMode {
	case "", "full-duplex", "buffered":
	default:
		errs = append(errs, fmt.Errorf("extProc.bodyMode %q: want full-duplex or buffered", c.ExtProc.BodyMode))
	}
	switch c.ExtProc.TLS {
	case "", "off", "self-signed":
	case "files":
		if c.ExtProc.CertPath == "" {
			errs = append(errs, errors.New("extProc.tls files needs extProc.certPath (--ext-proc-cert-path)"))
		}
	default:
		errs = append(errs, fmt.Errorf("extProc.tls %q: want off, self-signed or files", c.ExtProc.TLS))
	}
	if c.ExtProc.MaxBodyBytes < 0 {
		errs = append(errs, fmt.Errorf("extProc.maxBodyBytes %d: must be >= 0 (0: 4 MiB)", c.ExtProc.MaxBodyBytes))
	}
	switch c.Discovery.Mode {
	case "static":
		if len(c.Discovery.Endpoints) == 0 {
			errs = append(errs, errors.New("static discovery needs endpoints (--endpoints or discovery.endpoints)"))
		}
	case "dns":
		if len(c.Discovery.DNS) == 0 {
			errs = append(errs, errors.New("dns discovery needs names (--dns or discovery.dns)"))
		}
	case "kubernetes":
		if c.Discovery.Namespace == "" {
			errs = append(errs, errors.New("kubernetes discovery needs a namespace (--namespace or POD_NAMESPACE)"))
		}
	default:
		errs = append(errs, fmt.Errorf("discovery mode %q: want static, dns or kubernetes", c.Discovery.Mode))
	}
	if d := &c.Discovery; d.RetryInitial.Duration < 0 || d.RetryMax.Duration < 0 ||
		(d.RetryInitial.Duration > 0 && d.RetryMax.Duration > 0 && d.RetryInitial.Duration > d.RetryMax.Duration) {
		errs = append(errs, fmt.Errorf("discovery.retryInitial %v and retryMax %v: must be >= 0 (0: default), initial <= max",
			d.RetryInitial.Duration, d.RetryMax.Duration))
	}
	if _, err := pickapi.ParseStrategy(c.Discovery.Strategy); err != nil {
		errs = append(errs, fmt.Errorf("strategy: %w", err))
	}
	if c.Scrape.Interval.Duration <= 0 || c.Scrape.Timeout.Duration <= 0 || c.Scrape.StaleAfter.Duration <= 0 {
		errs = append(errs, errors.New("scrape interval, timeout and staleAfter must be positive"))
	}
	if c.Scrape.MaxPageBytes < 4096 || c.Scrape.MaxFailures < 1 {
		errs = append(errs, errors.New("scrape.maxPageBytes must be >= 4096 and scrape.maxFailures >= 1"))
	}
	if _, err := scrape.ParseEngine(c.Scrape.Engine); err != nil {
		errs = append(errs, fmt.Errorf("scrape: %w", err))
	}
	if c.Scheduling.PrefixCapacity < 1 || c.Scheduling.PrefixCapacity > 1<<22 {
		errs = append(errs, errors.New("scheduling.prefixCapacity must be in 1..4194304"))
	}
	if _, err := c.SchedulingConfig(); err != nil {
		errs = append(errs, fmt.Errorf("scheduling: %w", err))
	}
	if err := c.KVEvents.validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.validateReplicas(); err != nil {
		errs = append(errs, fmt.Errorf("replicas: %w", err))
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log level %q: want debug, info, warn or error", c.LogLevel))
	}
	return errors.Join(errs...)
}

// ScrapeEngine is the validated scrape.engine (Load has checked it).
func (c *Config) ScrapeEngine() scrape.Engine {
	e, _ := scrape.ParseEngine(c.Scrape.Engine)
	return e
}

// Port extracts the port of an "ip:port" (for a synthesised pool).
func Port(ep string) int32 {
	i := strings.LastIndexByte(ep, ':')
	p, _ := strconv.Atoi(ep[i+1:])
	return int32(p)
}
