package bench

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestBarLine(t *testing.T) {
	assert.Equal(t, " 40%|████      | 40/100 [00:04<00:06, 10.00it/s]", BarLine(40, 0, 100, 4*time.Second, 10))
	assert.Equal(t, "100%|██████████| 100/100 [01:40<00:00, 1.00it/s] 3 failed", BarLine(100, 3, 100, 100*time.Second, 10))
	assert.Equal(t, "  0%|          | 0/7 [00:00<?, 0.00it/s]", BarLine(0, 0, 7, 0, 10))
	// Eighths of a cell: 45% of 10 cells is 4 full and a half.
	assert.Equal(t, " 45%|████▌     | 45/100 [00:45<00:55, 1.00it/s]", BarLine(45, 0, 100, 45*time.Second, 10))
	assert.Equal(t, 10, len([]rune(strings.Split(BarLine(45, 0, 100, time.Second, 10), "|")[1])))
}

func TestPlainProgressEveryTenPercent(t *testing.T) {
	var b bytes.Buffer
	p := NewProgress(&b, false)
	for i := 0; i <= 40; i++ {
		p.Update(i, 0, 40)
	}
	p.Close()
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	assert.Len(t, lines, 11, "0%, 10%, ..., 100%")
	assert.True(t, strings.HasPrefix(lines[10], "progress: 40/40 requests (100%), 0 failed, "), lines[10])
	assert.NotContains(t, b.String(), "\r")
}

func TestTTYProgressRedrawsInPlace(t *testing.T) {
	var b bytes.Buffer
	p := NewProgress(&b, true)
	p.Update(0, 0, 3)
	p.Update(3, 1, 3)
	p.Close()
	out := b.String()
	assert.True(t, strings.HasPrefix(out, "\r"))
	assert.Equal(t, 1, strings.Count(out, "\n"), "one line, redrawn, ended at Close")
	assert.Contains(t, out, "100%|")
	assert.Contains(t, out, "1 failed\n")
}
