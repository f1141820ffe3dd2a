package labelguard

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTagValue(t *testing.T) {
	require.Equal(t, "meta-llama/Llama-3.1-8B-Instruct", TagValue("meta-llama/Llama-3.1-8B-Instruct"))
	require.Equal(t, Unknown, TagValue(""))
	require.Equal(t, "a_b_c", TagValue("a;b=c"))
	require.Len(t, TagValue(string(make([]byte, 1000))), MaxValueLen)
}
