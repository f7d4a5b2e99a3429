package devenv

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Every simulated node is the same size: 32 CPUs, 256Gi and 110 pods (the
// kubelet's default), so that 10,000 pods fit on 91 nodes.
const (
	nodeCPU    = "32"
	nodeMemory = "256Gi"
	nodePods   = 110
)

// maxNodes bounds Options.Nodes: node i gets the /24 pod CIDR number i of
// 10.64.0.0/10 and the address number i+1 of 172.16.0.0/12.
const maxNodes = 1 << 14

var (
	podCIDRBase = netip.MustParseAddr("10.64.0.0")
	nodeIPBase  = netip.MustParseAddr("172.16.0.0")
)

// NodeName is the name of the i-th simulated node.
func NodeName(i int) string { return fmt.Sprintf("kwok-node-%d", i) }

// kwokNode returns the i-th simulated Node, status included: the API server
// keeps the status of a Node on create (a kubelet registers that way), and
// kwok then only adds the conditions and node info (config/kwok/stages.yaml).
func kwokNode(i int) *corev1.Node {
	name := NodeName(i)
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:              resource.MustParse(nodeCPU),
		corev1.ResourceMemory:           resource.MustParse(nodeMemory),
		corev1.ResourcePods:             *resource.NewQuantity(nodePods, resource.DecimalSI),
		corev1.ResourceEphemeralStorage: resource.MustParse("1Ti"),
	}
	podCIDR := addrPlus(podCIDRBase, uint32(i)<<8).String() + "/24" // #nosec G115 -- 0 <= i < maxNodes (2^14)
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Labels: map[string]string{
				"kubernetes.io/hostname": name,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
				"type":                   "kwok",
			},
			Annotations: map[string]string{kwokNodeAnnotation: kwokNodeValue},
		},
		Spec: corev1.NodeSpec{PodCIDR: podCIDR, PodCIDRs: []string{podCIDR}},
		Status: corev1.NodeStatus{
			Capacity:    capacity,
			Allocatable: capacity,
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: addrPlus(nodeIPBase, uint32(i)+1).String()}, // #nosec G115 -- 0 <= i < maxNodes (2^14)
				{Type: corev1.NodeHostName, Address: name},
			},
		},
	}
}

// addrPlus returns the IPv4 address n addresses after base.
func addrPlus(base netip.Addr, n uint32) netip.Addr {
	b := base.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += n
	var out [4]byte
	binary.BigEndian.PutUint32(out[:], v)
	return netip.AddrFrom4(out)
}

// createNodes creates the simulated Nodes (an existing one is kept).
func createNodes(ctx context.Context, cs kubernetes.Interface, n int) error {
	for i := range n {
		_, err := cs.CoreV1().Nodes().Create(ctx, kwokNode(i), metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create node %s: %w", NodeName(i), err)
		}
	}
	return nil
}

// readyNodes counts the simulated Nodes whose Ready condition is True.
func readyNodes(ctx context.Context, cs kubernetes.Interface) (int, error) {
	list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, err
	}
	ready := 0
	for _, node := range list.Items {
		if node.Annotations[kwokNodeAnnotation] != kwokNodeValue {
			continue
		}
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				ready++
			}
		}
	}
	return ready, nil
}
