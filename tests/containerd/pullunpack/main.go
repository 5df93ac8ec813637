// pullunpack: containerd's client Pull with unpack (what the CRI plugin and
// nerdctl do), the only path that sends containerd.io/snapshot.ref on the
// extraction Prepare. Test tooling for tests/containerd/pull_unpack.sh,
// built offline from Debian's golang-github-containerd-containerd-dev.
//
//	pullunpack SOCKET NAMESPACE SNAPSHOTTER REF
//	pullunpack prepare SOCKET NAMESPACE SNAPSHOTTER KEY [LABEL=VALUE ...]
//
// REF is served over plain HTTP (a local registry). Prints the image's
// name, its layers' diffIDs and chainIDs, one "chain <i> <diffID> <chainID>"
// line each, and "unpacked true" when containerd reports the image unpacked
// in SNAPSHOTTER.
//
// prepare: a Prepare with labels through containerd's snapshot service
// (ctr 1.6 cannot set labels on a Prepare). Prints "prepared <n> mounts", or
// "error <class>: <message>" with containerd's errdefs class and exits 3.
package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/remotes/docker"
	"github.com/containerd/containerd/snapshots"
	"github.com/opencontainers/image-spec/identity"
)

func main() {
	if len(os.Args) >= 6 && os.Args[1] == "prepare" {
		os.Exit(prepare(os.Args[2], os.Args[3], os.Args[4], os.Args[5], os.Args[6:]))
	}
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: pullunpack SOCKET NAMESPACE SNAPSHOTTER REF")
		os.Exit(2)
	}
	sock, ns, snapshotter, ref := os.Args[1], os.Args[2], os.Args[3], os.Args[4]
	if err := run(sock, ns, snapshotter, ref); err != nil {
		fmt.Fprintln(os.Stderr, "pullunpack:", err)
		os.Exit(1)
	}
}

func run(sock, ns, snapshotter, ref string) error {
	client, err := containerd.New(sock, containerd.WithTimeout(10*time.Second))
	if err != nil {
		return err
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ns), 2*time.Minute)
	defer cancel()
	resolver := docker.NewResolver(docker.ResolverOptions{
		Hosts: docker.ConfigureDefaultRegistries(docker.WithPlainHTTP(func(string) (bool, error) { return true, nil })),
	})
	img, err := client.Pull(ctx, ref,
		containerd.WithResolver(resolver),
		containerd.WithPullUnpack,
		containerd.WithPullSnapshotter(snapshotter),
		containerd.WithPlatform("linux/amd64"))
	if err != nil {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	fmt.Println("image", img.Name())
	diffIDs, err := img.RootFS(ctx)
	if err != nil {
		return err
	}
	for i := range diffIDs {
		fmt.Println("chain", i, diffIDs[i], identity.ChainID(diffIDs[:i+1]))
	}
	unpacked, err := img.IsUnpacked(ctx, snapshotter)
	if err != nil {
		return err
	}
	fmt.Println("unpacked", unpacked)
	return nil
}

func errClass(err error) string {
	switch {
	case errdefs.IsInvalidArgument(err):
		return "invalid-argument"
	case errdefs.IsNotFound(err):
		return "not-found"
	case errdefs.IsAlreadyExists(err):
		return "already-exists"
	case errdefs.IsFailedPrecondition(err):
		return "failed-precondition"
	case errdefs.IsNotImplemented(err):
		return "not-implemented"
	case errdefs.IsUnavailable(err):
		return "unavailable"
	}
	return "unknown"
}

func prepare(sock, ns, snapshotter, key string, labelArgs []string) int {
	client, err := containerd.New(sock, containerd.WithTimeout(10*time.Second))
	if err != nil {
		fmt.Fprintln(os.Stderr, "pullunpack:", err)
		return 1
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ns), time.Minute)
	defer cancel()
	labels := map[string]string{}
	for _, kv := range labelArgs {
		i := strings.IndexByte(kv, '=')
		if i < 0 {
			fmt.Fprintln(os.Stderr, "pullunpack: label without '=':", kv)
			return 2
		}
		labels[kv[:i]] = kv[i+1:]
	}
	mounts, err := client.SnapshotService(snapshotter).Prepare(ctx, key, "", snapshots.WithLabels(labels))
	if err != nil {
		fmt.Printf("error %s: %v\n", errClass(err), err)
		return 3
	}
	fmt.Printf("prepared %d mounts\n", len(mounts))
	for _, m := range mounts {
		fmt.Printf("mount %s %s %s\n", m.Type, m.Source, strings.Join(m.Options, ","))
	}
	return 0
}
