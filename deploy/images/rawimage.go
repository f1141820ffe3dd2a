package images

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// rawImage is an image whose manifest and config are written out exactly:
// the Wasm spec's oci variant has a config that is not an OCI image config,
// which go-containerregistry's mutate package (built around one) cannot
// make. partial.CompressedToImage fills in the rest of v1.Image.
type rawImage struct {
	manifest []byte
	config   []byte
	layers   map[v1.Hash]v1.Layer
}

func newRawImage(m v1.Manifest, config []byte, layers ...v1.Layer) (v1.Image, error) {
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	r := &rawImage{manifest: raw, config: config, layers: map[v1.Hash]v1.Layer{}}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return nil, err
		}
		r.layers[d] = l
	}
	return partial.CompressedToImage(r)
}

func (r *rawImage) RawConfigFile() ([]byte, error)      { return r.config, nil }
func (r *rawImage) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }
func (r *rawImage) RawManifest() ([]byte, error)        { return r.manifest, nil }
func (r *rawImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if l, ok := r.layers[h]; ok {
		return l, nil
	}
	return nil, fmt.Errorf("blob %s is not in this image", h)
}

// gzipLayer is an OCI tar+gzip layer of an uncompressed tar.
func gzipLayer(tarBytes []byte) (v1.Layer, error) {
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(tarBytes)), nil
	}, tarball.WithMediaType(types.OCILayer))
}
