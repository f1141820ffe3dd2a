package images

import (
	"fmt"
	"strconv"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// NonRootUID is the user (and group) the service images run as: distroless's
// "nonroot", which the Deployments' runAsUser also names.
const NonRootUID = 65532

// GoMeta describes one service image.
type GoMeta struct {
	Name     string // the binary's name: the entrypoint is /<Name>
	Platform v1.Platform
	Ports    []int // documented as ExposedPorts
	Labels   map[string]string
	Created  time.Time
}

// baseLayer is the filesystem a static Go binary needs beside itself: a
// passwd and group naming root and the non-root user (so tools that resolve
// the user find it), that user's home, and a writable /tmp. No shell, no
// package manager. Made here rather than pulled: it is a few hundred bytes,
// and no base image can be pulled where the images are built.
func baseLayer(created time.Time) (v1.Layer, error) {
	uid := strconv.Itoa(NonRootUID)
	return tarLayer([]tarEntry{
		{name: "etc", dir: true, mode: 0o755},
		{name: "etc/passwd", mode: 0o644, body: []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:" + uid + ":" + uid + ":nonroot:/home/nonroot:/sbin/nologin\n")},
		{name: "etc/group", mode: 0o644, body: []byte("root:x:0:\nnonroot:x:" + uid + ":\n")},
		{name: "home", dir: true, mode: 0o755},
		{name: "home/nonroot", dir: true, mode: 0o700, uid: NonRootUID, gid: NonRootUID},
		{name: "tmp", dir: true, mode: 0o1777},
	}, created)
}

// GoImage makes the image of one static Go binary: the base layer, then
// the binary as /<name>, its entrypoint, run as NonRootUID.
func GoImage(binary []byte, meta GoMeta) (v1.Image, error) {
	if meta.Name == "" || meta.Platform.OS == "" || meta.Platform.Architecture == "" {
		return nil, fmt.Errorf("image %q: name, OS and architecture are required", meta.Name)
	}
	base, err := baseLayer(meta.Created)
	if err != nil {
		return nil, err
	}
	app, err := tarLayer([]tarEntry{{name: meta.Name, mode: 0o555, body: binary}}, meta.Created)
	if err != nil {
		return nil, err
	}
	at := v1.Time{Time: meta.Created}
	img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1),
		mutate.Addendum{Layer: base, MediaType: types.OCILayer, History: v1.History{Created: at, CreatedBy: "meshllm-images: base (passwd, group, /tmp)"}},
		mutate.Addendum{Layer: app, MediaType: types.OCILayer, History: v1.History{Created: at, CreatedBy: "meshllm-images: /" + meta.Name}},
	)
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = meta.Platform.OS, meta.Platform.Architecture, meta.Platform.Variant
	cf.Created = at
	cf.Config.Entrypoint = []string{"/" + meta.Name}
	cf.Config.User = strconv.Itoa(NonRootUID) + ":" + strconv.Itoa(NonRootUID)
	cf.Config.WorkingDir = "/home/nonroot"
	cf.Config.Env = []string{"PATH=/", "HOME=/home/nonroot"}
	cf.Config.Labels = meta.Labels
	if len(meta.Ports) > 0 {
		cf.Config.ExposedPorts = map[string]struct{}{}
		for _, p := range meta.Ports {
			cf.Config.ExposedPorts[strconv.Itoa(p)+"/tcp"] = struct{}{}
		}
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return nil, err
	}
	return mutate.Annotations(img, manifestAnnotations(meta.Labels, meta.Created)).(v1.Image), nil
}
