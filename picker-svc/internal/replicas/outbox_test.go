package replicas

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Small picks and ends fill packets; a pick too large for one goes over
// TCP; every message decodes to what was queued, and the queued pick's age
// at the send rides along.
func TestPackSplitsPacketsAndLargePicks(t *testing.T) {
	now := time.Now()
	var picks []queuedPick
	for i := range 30 {
		p := wirePick{ID: uint64(i + 1), Endpoint: "10.0.0.1:8000", Prompt: 100, Hashes: chain(uint64(i), 20)}
		picks = append(picks, queuedPick{p: p, at: now.Add(-3 * time.Millisecond), size: pickSizeBound(&p)})
	}
	big := wirePick{ID: 99, Endpoint: "10.0.0.2:8000", Hashes: chain(5, 500)}
	picks = append(picks, queuedPick{p: big, at: now, size: pickSizeBound(&big)})
	ends := make([]uint64, 300)
	for i := range ends {
		ends[i] = uint64(1000 + i)
	}
	seq := uint64(0)
	msgs, err := pack("me", picks, ends, now, 1400, 1<<20, func() uint64 { seq++; return seq })
	require.NoError(t, err)
	var gotPicks, gotEnds []uint64
	lastSeq := uint64(0)
	for _, m := range msgs {
		var b wireBatch
		require.NoError(t, decode(m.data, kindBatch, &b))
		require.Equal(t, "me", b.From)
		if m.tcp {
			require.Zero(t, b.Seq, "TCP batches are not numbered")
		} else {
			require.LessOrEqual(t, len(m.data), 1400)
			require.Equal(t, lastSeq+1, b.Seq)
			lastSeq = b.Seq
		}
		for _, p := range b.Picks {
			gotPicks = append(gotPicks, p.ID)
			if p.ID == 99 {
				require.True(t, m.tcp)
				require.Equal(t, big.Hashes, p.Hashes)
			} else {
				require.EqualValues(t, 3000, p.AgeUS)
			}
		}
		gotEnds = append(gotEnds, b.Ends...)
	}
	require.Len(t, gotPicks, 31)
	require.Equal(t, ends, gotEnds)
	require.Greater(t, len(msgs), 3)
}

// Past its budget the outbox drops the oldest picks first and says how many.
func TestOutboxDropsOldest(t *testing.T) {
	o := newOutbox(1000)
	for i := range 20 {
		o.addPick(wirePick{ID: uint64(i + 1), Endpoint: "10.0.0.1:8000", Hashes: chain(1, 5)}, time.Now())
	}
	o.addEnds([]uint64{7, 8})
	picks, ends, dropped := o.take()
	require.NotEmpty(t, picks)
	require.EqualValues(t, 20, picks[len(picks)-1].p.ID, "the newest stay")
	require.Equal(t, 20-len(picks), dropped)
	require.Equal(t, []uint64{7, 8}, ends)
	total := 0
	for _, p := range picks {
		total += p.size
	}
	require.LessOrEqual(t, total+2*endSize, 1000)
	picks, ends, dropped = o.take()
	require.Empty(t, picks)
	require.Empty(t, ends)
	require.Zero(t, dropped)
}
