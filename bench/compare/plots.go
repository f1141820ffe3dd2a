package compare

import (
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// WritePlots renders the PNGs (those named in only; nil: the report's
// usual six) and returns their file names.
func WritePlots(dir string, policies []string, runs []*Run, only []string) ([]string, error) {
	first := map[string]*Run{}
	for _, r := range runs {
		if r.Repetition == 1 {
			first[r.Policy] = r
		}
	}
	var names []string
	steps := []struct {
		name string
		f    func(string) error
	}{
		{"ttft_cdf.png", func(path string) error { return ttftCDF(path, policies, runs) }},
		{"kv_usage.png", func(path string) error {
			return perPod(path, policies, first, "KV-cache usage (%)", 100, func(p PodSample) float64 { return p.KVCacheUsage * 100 })
		}},
		{"queue_depth.png", func(path string) error {
			return perPod(path, policies, first, "requests waiting", 0, func(p PodSample) float64 { return p.Waiting })
		}},
		{"ttft_by_send_time.png", func(path string) error { return ttftBySendTime(path, policies, first) }},
		{"output_throughput.png", func(path string) error { return throughput(path, policies, first) }},
		{"requests_per_pod.png", func(path string) error { return requestsPerPod(path, policies, runs) }},
		{PhasePlot, func(path string) error { return phase(path, policies, first) }},
	}
	if only == nil {
		only = defaultPlots
	}
	for _, s := range steps {
		if !slices.Contains(only, s.name) {
			continue
		}
		if err := s.f(filepath.Join(dir, s.name)); err != nil {
			return names, fmt.Errorf("%s: %w", s.name, err)
		}
		names = append(names, s.name)
	}
	return names, nil
}

// PhasePlot is the grid's one picture of a cell: KV per pod over time (in
// phase or not) above each request's TTFT by send time, a column per policy.
const PhasePlot = "phase.png"

var defaultPlots = []string{"ttft_cdf.png", "kv_usage.png", "queue_depth.png", "ttft_by_send_time.png", "output_throughput.png", "requests_per_pod.png"}

func newPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Add(plotter.NewGrid())
	return p
}

// ttftCDF pools every repetition's TTFTs of a policy.
func ttftCDF(path string, policies []string, runs []*Run) error {
	p := newPlot("TTFT CDF (all repetitions)", "time to first token (simulated s)", "fraction of requests")
	for i, pol := range policies {
		var xs []float64
		for _, r := range runs {
			if r.Policy == pol {
				xs = append(xs, r.TTFTs...)
			}
		}
		slices.Sort(xs)
		pts := make(plotter.XYs, len(xs))
		for j, x := range xs {
			pts[j] = plotter.XY{X: x, Y: float64(j+1) / float64(len(xs))}
		}
		if len(pts) == 0 {
			continue
		}
		if err := addLine(p, pts, i, 2, pol); err != nil {
			return err
		}
	}
	p.Legend.Top = false
	p.Legend.Left = false
	p.Y.Min, p.Y.Max = 0, 1
	return p.Save(8*vg.Inch, 5*vg.Inch, path)
}

// ttftBySendTime tiles one scatter per policy (first repetition): each
// request's TTFT against when it was sent, on a log axis shared by the
// panels. It shows where a tail comes from: the first wave's queue at the
// start, its echo when the wave's requests end together, or the steady
// state.
func ttftBySendTime(path string, policies []string, first map[string]*Run) error {
	plots, err := sendTimePlots(policies, first)
	if err != nil {
		return err
	}
	return tile(path, plots)
}

func sendTimePlots(policies []string, first map[string]*Run) ([]*plot.Plot, error) {
	lo, hi, right := 0.0, 0.0, 0.0
	for _, pol := range policies {
		r := first[pol]
		if r == nil {
			continue
		}
		for i, t := range r.TTFTs {
			if t > 0 && (lo == 0 || t < lo) {
				lo = t
			}
			hi = max(hi, t)
			right = max(right, r.Starts[i])
		}
	}
	var plots []*plot.Plot
	for i, pol := range policies {
		r := first[pol]
		if r == nil {
			continue
		}
		p := newPlot(pol, "sent at (simulated s)", "TTFT (simulated s, log)")
		var pts plotter.XYs
		for j, t := range r.TTFTs {
			if t > 0 { // a log axis has no 0
				pts = append(pts, plotter.XY{X: r.Starts[j], Y: t})
			}
		}
		if len(pts) > 0 {
			sc, err := plotter.NewScatter(pts)
			if err != nil {
				return nil, err
			}
			sc.GlyphStyle.Color = plotutil.Color(i)
			sc.GlyphStyle.Radius = vg.Points(1)
			sc.GlyphStyle.Shape = draw.CircleGlyph{}
			p.Add(sc)
		}
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
		if lo > 0 {
			p.Y.Min, p.Y.Max = lo/1.2, hi*1.2
		}
		p.X.Min, p.X.Max = 0, right
		plots = append(plots, p)
	}
	return plots, nil
}

// perPod tiles one plot per policy, a line per pod, with a shared y range
// (yMax 0: the largest value).
func perPod(path string, policies []string, first map[string]*Run, ylabel string, yMax float64, v func(PodSample) float64) error {
	plots, err := perPodPlots(policies, first, ylabel, yMax, v)
	if err != nil {
		return err
	}
	return tile(path, plots)
}

func perPodPlots(policies []string, first map[string]*Run, ylabel string, yMax float64, v func(PodSample) float64) ([]*plot.Plot, error) {
	var plots []*plot.Plot
	top := yMax
	for _, pol := range policies {
		r := first[pol]
		if r == nil {
			continue
		}
		for _, s := range r.Samples {
			for _, ps := range s.Pods {
				top = max(top, v(ps))
			}
		}
	}
	if top == 0 {
		top = 1
	}
	var right float64
	for _, pol := range policies {
		if r := first[pol]; r != nil && len(r.Samples) > 0 {
			right = max(right, r.Samples[len(r.Samples)-1].T)
		}
	}
	for _, pol := range policies {
		r := first[pol]
		if r == nil {
			continue
		}
		p := newPlot(pol, "simulated s", ylabel)
		pods := 0
		if len(r.Samples) > 0 {
			pods = len(r.Samples[0].Pods)
		}
		for i := 0; i < pods; i++ {
			pts := make(plotter.XYs, len(r.Samples))
			for j, s := range r.Samples {
				pts[j] = plotter.XY{X: s.T, Y: v(s.Pods[i])}
			}
			if err := addLine(p, pts, i, 1.5, fmt.Sprintf("pod %d", i)); err != nil {
				return nil, err
			}
		}
		p.Legend.Top = true
		p.Legend.TextStyle.Font.Size = vg.Points(8)
		p.Y.Min, p.Y.Max = 0, top*1.05
		p.X.Min, p.X.Max = 0, right
		plots = append(plots, p)
	}
	return plots, nil
}

func tile(path string, plots []*plot.Plot) error {
	return tileRows(path, [][]*plot.Plot{plots}, 5*vg.Inch, 4*vg.Inch)
}

// tileRows draws rows of plots (every row as long) into one PNG, each panel
// w x h.
func tileRows(path string, rows [][]*plot.Plot, w, h vg.Length) error {
	if len(rows) == 0 || len(rows[0]) == 0 {
		return fmt.Errorf("nothing to plot")
	}
	cols := len(rows[0])
	for _, r := range rows {
		if len(r) != cols {
			return fmt.Errorf("rows of %d and %d plots", cols, len(r))
		}
	}
	img := vgimg.New(vg.Length(cols)*w, vg.Length(len(rows))*h)
	dc := draw.New(img)
	t := draw.Tiles{Rows: len(rows), Cols: cols, PadX: 6 * vg.Millimeter, PadY: 4 * vg.Millimeter,
		PadTop: 2 * vg.Millimeter, PadBottom: 2 * vg.Millimeter, PadLeft: 2 * vg.Millimeter, PadRight: 2 * vg.Millimeter}
	canvases := plot.Align(rows, t, dc)
	for i, r := range rows {
		for j, p := range r {
			p.Draw(canvases[i][j])
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// phase is the grid's cell picture: a column per policy (first
// repetition), KV-cache usage per pod over time above every request's TTFT
// by send time, compact enough to read ten cells side by side.
func phase(path string, policies []string, first map[string]*Run) error {
	kv, err := perPodPlots(policies, first, "KV-cache usage (%)", 100, func(p PodSample) float64 { return p.KVCacheUsage * 100 })
	if err != nil {
		return err
	}
	ttft, err := sendTimePlots(policies, first)
	if err != nil {
		return err
	}
	for _, p := range append(slices.Clone(kv), ttft...) {
		p.Title.TextStyle.Font.Size = vg.Points(10)
		p.X.Label.TextStyle.Font.Size = vg.Points(8)
		p.Y.Label.TextStyle.Font.Size = vg.Points(8)
		p.Legend.TextStyle.Font.Size = vg.Points(6)
	}
	for _, p := range ttft {
		p.Title.Text = ""
	}
	return tileRows(path, [][]*plot.Plot{kv, ttft}, 4*vg.Inch, 2.6*vg.Inch)
}

// throughput is the fleet's output tokens per simulated second between two
// samples (the sum of the pods' generation_tokens_total differences).
func throughput(path string, policies []string, first map[string]*Run) error {
	p := newPlot("output token throughput, 10 s windows (first repetition)", "simulated s", "output tok/s (fleet)")
	for i, pol := range policies {
		r := first[pol]
		if r == nil || len(r.Samples) < 2 {
			continue
		}
		// A rate over about 10 simulated seconds: one scrape interval is
		// noisy (scrapes land at uneven points of the simulators' steps).
		k := 1
		if dt := r.Samples[1].T - r.Samples[0].T; dt > 0 {
			k = max(1, int(10/dt+0.5))
		}
		var pts plotter.XYs
		for j := k; j < len(r.Samples); j++ {
			a, b := r.Samples[j-k], r.Samples[j]
			dt := b.T - a.T
			if dt <= 0 {
				continue
			}
			var d float64
			for k := range b.Pods {
				if !a.Pods[k].ScrapeFailed && !b.Pods[k].ScrapeFailed {
					d += b.Pods[k].GenerationTokens - a.Pods[k].GenerationTokens
				}
			}
			pts = append(pts, plotter.XY{X: b.T, Y: d / dt})
		}
		if err := addLine(p, pts, i, 1.5, pol); err != nil {
			return err
		}
	}
	p.Y.Min = 0
	p.X.Min = 0
	p.Legend.Top = true
	return p.Save(8*vg.Inch, 5*vg.Inch, path)
}

// requestsPerPod is a grouped bar chart: per pod, a bar per policy (mean
// over repetitions).
func requestsPerPod(path string, policies []string, runs []*Run) error {
	p := newPlot("requests per pod (mean over repetitions)", "", "requests")
	pods := 0
	for _, r := range runs {
		pods = max(pods, len(r.RequestsPerPod))
	}
	width := vg.Points(60 / float64(max(len(policies), 1)))
	top := 1.0
	for i, pol := range policies {
		vals := make(plotter.Values, pods)
		n := 0
		for _, r := range runs {
			if r.Policy != pol {
				continue
			}
			n++
			for k, c := range r.RequestsPerPod {
				vals[k] += float64(c)
			}
		}
		for k := range vals {
			vals[k] /= float64(max(n, 1))
			top = max(top, vals[k])
		}
		b, err := plotter.NewBarChart(vals, width)
		if err != nil {
			return err
		}
		b.Color = plotutil.Color(i)
		b.LineStyle.Color = color.Black
		b.Offset = width * vg.Length(float64(i)-float64(len(policies)-1)/2)
		p.Add(b)
		p.Legend.Add(pol, b)
	}
	var labels []string
	for k := 0; k < pods; k++ {
		labels = append(labels, fmt.Sprintf("pod %d", k))
	}
	p.NominalX(labels...)
	p.Legend.Top = true
	p.Y.Min = 0
	p.Y.Max = top * 1.3 // room for the legend above the bars
	return p.Save(8*vg.Inch, 5*vg.Inch, path)
}

// addLine draws pts on p in the i-th palette colour, width points wide,
// with a legend entry.
func addLine(p *plot.Plot, pts plotter.XYs, i int, width float64, name string) error {
	l, err := plotter.NewLine(pts)
	if err != nil {
		return err
	}
	l.Color = plotutil.Color(i)
	l.Width = vg.Points(width)
	p.Add(l)
	p.Legend.Add(name, l)
	return nil
}
