// Package resolution is the model resolution the filter keeps for when no
// pick answers: the pool's resolution table (pickapi.Resolution) learned
// from the picker, how it is kept in Envoy shared data (one value every
// worker's VM reads), when it may be used, and how one VM paces fetching
// and confirming it. Plain Go: the host calls live in package main.
package resolution

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"strconv"

	"github.com/meshllm/meshllm/filter/route"
	"github.com/meshllm/meshllm/pickapi"
)

// What the filter did with a request's model when it routed it without a
// fresh pick resolving it: the outcome tag of the local-resolutions metric
// (a bounded set).
const (
	OutcomeRewritten     = "rewritten"      // the model was rewritten to a target drawn from the kept table
	OutcomeUnchanged     = "unchanged"      // the kept table leaves the model as it is (or drew the model itself)
	OutcomeNoTable       = "no_table"       // no table is kept for the pool (none learned yet, or the picker offers none)
	OutcomeExpired       = "expired"        // the kept table is older than resolution_max_age_ms: not used
	OutcomeInvalid       = "invalid"        // shared data holds no valid table (written by something else?): not used
	OutcomeNotRewritable = "not_rewritable" // the body cannot take the new model (its length has left already)
)

// Outcomes of fetching the table: the outcome tag of the fetch metric.
const (
	FetchOK       = "ok"
	FetchTimeout  = "timeout"  // no answer in time (or the connection failed)
	FetchStatus   = "status"   // not a 200
	FetchOversize = "oversize" // larger than pickapi.MaxResolutionSize: not read
	FetchGarbage  = "garbage"  // not a valid table, or another pool's
	FetchDispatch = "dispatch" // Envoy refused the call
)

// Key is the shared-data key of the table kept for pool.
func Key(pool string) string { return "meshllm/resolution/" + pool }

// Kept is what shared data holds: a table and when a picker last named its
// version (the table's age counts from there).
type Kept struct {
	SeenMillis int64
	Table      pickapi.Resolution
}

// Encode is a kept table's shared-data value: the Unix milliseconds it was
// last seen, a line feed, the table's JSON.
func Encode(seenMillis int64, t *pickapi.Resolution) []byte {
	b := strconv.AppendInt(nil, seenMillis, 10)
	b = append(b, '\n')
	return t.AppendJSON(b)
}

// maxStamp is the longest seen-time a value may start with (int64 digits).
const maxStamp = 19

// Decode reads a shared-data value back. Any plugin in the proxy can write
// shared data, so nothing is taken on trust: the value is refused whole
// unless it is exactly what Encode writes, a table ParseResolution accepts,
// for pool.
func Decode(b []byte, pool string) (Kept, error) {
	if len(b) > maxStamp+1+pickapi.MaxResolutionSize {
		return Kept{}, fmt.Errorf("kept resolution of %d bytes is larger than any table", len(b))
	}
	nl := bytes.IndexByte(b, '\n')
	if nl < 1 || nl > maxStamp {
		return Kept{}, errors.New("kept resolution: no time stamp")
	}
	for _, c := range b[:nl] {
		if c < '0' || c > '9' {
			return Kept{}, errors.New("kept resolution: the time stamp is not digits")
		}
	}
	seen, err := strconv.ParseInt(string(b[:nl]), 10, 64)
	if err != nil {
		return Kept{}, fmt.Errorf("kept resolution: %w", err)
	}
	t, err := pickapi.ParseResolution(b[nl+1:])
	if err != nil {
		return Kept{}, err
	}
	if t.Pool != pool {
		return Kept{}, fmt.Errorf("kept resolution is pool %q's, not %q's", t.Pool, pool)
	}
	return Kept{SeenMillis: seen, Table: t}, nil
}

// futureSlackMillis is how far ahead of this VM's clock a kept time may be
// (clocks of one process agree; more is a value nobody should trust).
const futureSlackMillis = 60_000

// Usable reports whether a table seen at seenMillis may be used at
// nowMillis with maxAgeMillis, and if not, the outcome that says why.
func Usable(seenMillis, nowMillis, maxAgeMillis int64) (bool, string) {
	switch {
	case seenMillis > nowMillis+futureSlackMillis:
		return false, OutcomeInvalid
	case nowMillis-seenMillis > maxAgeMillis:
		return false, OutcomeExpired
	}
	return true, ""
}

// ReadBody reports whether a table answer of size bytes is worth copying
// into the VM at all.
func ReadBody(size int) bool { return size > 0 && size <= pickapi.MaxResolutionSize }

// DecideFetch reads the picker's answer to a table fetch for pool.
func DecideFetch(a route.Answer, pool string) (pickapi.Resolution, string) {
	switch {
	case a.Headers == 0:
		return pickapi.Resolution{}, FetchTimeout
	case a.Status != 200:
		return pickapi.Resolution{}, FetchStatus
	case a.Body == nil || len(a.Body) != a.BodySize || a.BodySize > pickapi.MaxResolutionSize:
		return pickapi.Resolution{}, FetchOversize
	}
	t, err := pickapi.ParseResolution(a.Body)
	if err != nil || t.Pool != pool {
		return pickapi.Resolution{}, FetchGarbage
	}
	return t, FetchOK
}

// FetchPath is the :path that fetches pool's table from path.
func FetchPath(path, pool string) string {
	if pool == "" {
		return path
	}
	return path + "?pool=" + url.QueryEscape(pool)
}

// StepMillis paces one VM: it confirms the kept table (refreshes its seen
// time) at most once a StepMillis, and fetches again at most once a
// StepMillis after a fetch that failed. Once a second keeps the table's
// age exact to a second, and a failing picker's load from fetches nil.
const StepMillis = 1000

// Keeper paces one VM's work on the kept table: it remembers the version
// the latest pick named, and says whether to confirm or fetch, one fetch at
// a time.
type Keeper struct {
	announced   string
	confirmed   int64 // when this VM last confirmed (0: never)
	failed      int64 // when the last fetch failed (0: it did not)
	fetchSince  int64 // 0: no fetch in flight
	fetchBudget int64 // how long a fetch in flight may take
}

// Announce records the version a pick answer named.
func (k *Keeper) Announce(version string) { k.announced = version }

// Take returns the announced version and forgets it; "" when none was
// announced, or while a fetch is in flight (kept for after it). A fetch
// silent past its timeout and a second more counts as lost: its answer,
// if it comes, is then taken like any other.
func (k *Keeper) Take(nowMillis int64) string {
	if k.announced == "" {
		return ""
	}
	if k.fetchSince != 0 && nowMillis >= k.fetchSince && nowMillis-k.fetchSince <= k.fetchBudget+1000 {
		return ""
	}
	k.fetchSince = 0
	v := k.announced
	k.announced = ""
	return v
}

// within reports whether now is less than StepMillis after then (a clock
// that went back counts as past it, so that it stops nothing).
func within(then, now int64) bool { return then != 0 && now >= then && now-then < StepMillis }

// ConfirmDue reports whether this VM may confirm now.
func (k *Keeper) ConfirmDue(nowMillis int64) bool { return !within(k.confirmed, nowMillis) }

// MayConfirm reports whether this VM may confirm now, and if so counts it
// done.
func (k *Keeper) MayConfirm(nowMillis int64) bool {
	if !k.ConfirmDue(nowMillis) {
		return false
	}
	k.confirmed = max(nowMillis, 1)
	return true
}

// MayFetch reports whether this VM may fetch now: no fetch in flight, and
// none failed within StepMillis.
func (k *Keeper) MayFetch(nowMillis int64) bool {
	return k.fetchSince == 0 && !within(k.failed, nowMillis)
}

// Fetching records a fetch started at nowMillis that may take
// timeoutMillis.
func (k *Keeper) Fetching(nowMillis, timeoutMillis int64) {
	k.fetchSince, k.fetchBudget = max(nowMillis, 1), timeoutMillis
}

// Fetched records the fetch's end at nowMillis, and whether it brought a
// table.
func (k *Keeper) Fetched(nowMillis int64, ok bool) {
	k.fetchSince = 0
	if ok {
		k.failed = 0
	} else {
		k.failed = max(nowMillis, 1)
	}
}

// InFlight reports whether a fetch is in flight.
func (k *Keeper) InFlight() bool { return k.fetchSince != 0 }
