// Command fakegpu is a kubelet device plugin that advertises N fake "nvidia.com/gpu"
// devices, so that scheduling, limits and `kubectl describe node` behave as on a GPU
// node of the local cluster. It speaks the kubelet's own device-plugin API
// (k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1): registers with the kubelet's
// socket, lists its devices, and answers Allocate with the environment NVIDIA's
// plugin sets (NVIDIA_VISIBLE_DEVICES). No GPU is touched.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

type plugin struct {
	pluginapi.UnimplementedDevicePluginServer
	devices []*pluginapi.Device
	node    string
}

func (p *plugin) GetDevicePluginOptions(context.Context, *pluginapi.Empty) (*pluginapi.DevicePluginOptions, error) {
	return &pluginapi.DevicePluginOptions{}, nil
}

func (p *plugin) ListAndWatch(_ *pluginapi.Empty, stream pluginapi.DevicePlugin_ListAndWatchServer) error {
	if err := stream.Send(&pluginapi.ListAndWatchResponse{Devices: p.devices}); err != nil {
		return err
	}
	<-stream.Context().Done() // the devices never change
	return nil
}

func (p *plugin) Allocate(_ context.Context, req *pluginapi.AllocateRequest) (*pluginapi.AllocateResponse, error) {
	resp := &pluginapi.AllocateResponse{}
	for _, c := range req.ContainerRequests {
		resp.ContainerResponses = append(resp.ContainerResponses, &pluginapi.ContainerAllocateResponse{
			Envs: map[string]string{
				"NVIDIA_VISIBLE_DEVICES": strings.Join(c.DevicesIds, ","),
				"FORJA_FAKE_GPU_NODE":    p.node,
			},
		})
	}
	return resp, nil
}

func (p *plugin) GetPreferredAllocation(context.Context, *pluginapi.PreferredAllocationRequest) (*pluginapi.PreferredAllocationResponse, error) {
	return &pluginapi.PreferredAllocationResponse{}, nil
}

func (p *plugin) PreStartContainer(context.Context, *pluginapi.PreStartContainerRequest) (*pluginapi.PreStartContainerResponse, error) {
	return &pluginapi.PreStartContainerResponse{}, nil
}

func register(dir, endpoint, resource string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := grpc.NewClient("unix://"+filepath.Join(dir, "kubelet.sock"),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = pluginapi.NewRegistrationClient(conn).Register(ctx, &pluginapi.RegisterRequest{
		Version: pluginapi.Version, Endpoint: endpoint, ResourceName: resource,
	})
	return err
}

func main() {
	dir := flag.String("dir", pluginapi.DevicePluginPath, "the kubelet's device-plugins directory")
	count := flag.Int("count", 2, "devices to advertise")
	resource := flag.String("resource", "nvidia.com/gpu", "extended resource name")
	node := flag.String("node", "", "node name, passed to containers for tests")
	flag.Parse()

	p := &plugin{node: *node}
	for i := 0; i < *count; i++ {
		p.devices = append(p.devices, &pluginapi.Device{ID: fmt.Sprintf("GPU-fake-%s-%d", *node, i), Health: pluginapi.Healthy})
	}
	endpoint := "forja-fake-gpu.sock"
	sock := filepath.Join(*dir, endpoint)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	for {
		// The kubelet forgets plugins when it restarts (it deletes the sockets in its
		// directory): serve, register, and start over when our socket disappears.
		_ = os.Remove(sock)
		lis, err := net.Listen("unix", sock)
		if err != nil {
			log.Printf("listen %s: %v; retrying", sock, err)
			time.Sleep(2 * time.Second)
			continue
		}
		srv := grpc.NewServer()
		pluginapi.RegisterDevicePluginServer(srv, p)
		go func() { _ = srv.Serve(lis) }()
		if err := register(*dir, endpoint, *resource); err != nil {
			log.Printf("register with the kubelet: %v; retrying", err)
			srv.Stop()
			time.Sleep(2 * time.Second)
			continue
		}
		log.Printf("registered %d %s devices with the kubelet", *count, *resource)
		for {
			select {
			case <-stop:
				srv.Stop()
				return
			case <-time.After(2 * time.Second):
			}
			if _, err := os.Stat(sock); err != nil {
				log.Printf("socket gone (kubelet restarted); registering again")
				srv.Stop()
				break
			}
		}
	}
}
