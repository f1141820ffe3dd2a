package images

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// RefNameAnnotation carries the tag in a layout's index.json (OCI image
// layout spec).
const RefNameAnnotation = "org.opencontainers.image.ref.name"

// WriteLayout replaces dir with an OCI image layout holding one image or
// index, tagged tag, and returns its digest.
func WriteLayout(dir string, artifact any, tag string) (v1.Hash, error) {
	if err := os.RemoveAll(dir); err != nil {
		return v1.Hash{}, err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return v1.Hash{}, err
	}
	ann := layout.WithAnnotations(map[string]string{RefNameAnnotation: tag})
	switch a := artifact.(type) {
	case v1.Image:
		if err := p.AppendImage(a, ann); err != nil {
			return v1.Hash{}, err
		}
		return a.Digest()
	case v1.ImageIndex:
		if err := p.AppendIndex(a, ann); err != nil {
			return v1.Hash{}, err
		}
		return a.Digest()
	}
	return v1.Hash{}, fmt.Errorf("%T is neither an image nor an index", artifact)
}

// Layout is the one artifact of a layout WriteLayout wrote.
type Layout struct {
	Tag   string
	Desc  v1.Descriptor
	Image v1.Image      // set for an image
	Index v1.ImageIndex // set for an index
}

// ReadLayout opens a layout written by WriteLayout.
func ReadLayout(dir string) (Layout, error) {
	var l Layout
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return l, fmt.Errorf("%s: not an OCI layout (run make images first): %w", dir, err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return l, err
	}
	if len(m.Manifests) != 1 {
		return l, fmt.Errorf("%s: want one artifact in index.json, found %d", dir, len(m.Manifests))
	}
	l.Desc = m.Manifests[0]
	l.Tag = l.Desc.Annotations[RefNameAnnotation]
	if l.Tag == "" {
		return l, fmt.Errorf("%s: index.json names no tag (%s)", dir, RefNameAnnotation)
	}
	switch {
	case l.Desc.MediaType.IsIndex():
		l.Index, err = idx.ImageIndex(l.Desc.Digest)
	case l.Desc.MediaType.IsImage():
		l.Image, err = idx.Image(l.Desc.Digest)
	default:
		err = fmt.Errorf("%s: unexpected media type %s", dir, l.Desc.MediaType)
	}
	return l, err
}

// PushOptions of Push.
type PushOptions struct {
	Insecure bool // plain HTTP to the registry (localhost and 127.0.0.1 are always allowed it)
	Remote   []remote.Option
}

// Pushed is one image pushed.
type Pushed struct {
	Name   string
	Ref    name.Reference
	Digest v1.Hash
}

// Push sends the layouts under outDir (one per name of Names) to
// registry/<name>:<the layout's tag>. Credentials come from the Docker
// config (docker login, or $DOCKER_CONFIG), as for any registry client.
func Push(ctx context.Context, outDir, registry string, o PushOptions) ([]Pushed, error) {
	registry = strings.TrimSuffix(registry, "/")
	if registry == "" {
		return nil, errors.New("no registry: set REGISTRY=host[:port]/prefix")
	}
	var nopts []name.Option
	if o.Insecure {
		nopts = append(nopts, name.Insecure)
	}
	ropts := append([]remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}, o.Remote...)
	var out []Pushed
	for _, n := range Names() {
		l, err := ReadLayout(filepath.Join(outDir, n))
		if err != nil {
			return out, err
		}
		ref, err := name.NewTag(registry+"/"+n+":"+l.Tag, nopts...)
		if err != nil {
			return out, fmt.Errorf("REGISTRY %q: %w", registry, err)
		}
		if l.Index != nil {
			err = remote.WriteIndex(ref, l.Index, ropts...)
		} else {
			err = remote.Write(ref, l.Image, ropts...)
		}
		if err != nil {
			return out, fmt.Errorf("push %s: %w", ref, err)
		}
		out = append(out, Pushed{Name: n, Ref: ref, Digest: l.Desc.Digest})
	}
	return out, nil
}
