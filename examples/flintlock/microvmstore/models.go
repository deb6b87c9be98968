package microvmstore

import (
	"fmt"
	"strings"
)

// VMID names a microVM: namespace, name and uid ("namespace/name/uid").
type VMID struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	UID       string `json:"uid"`
}

// String is "namespace/name/uid".
func (id VMID) String() string { return id.Namespace + "/" + id.Name + "/" + id.UID }

// ParseVMID reads "namespace/name/uid".
func ParseVMID(s string) (VMID, error) {
	parts := strings.Split(s, "/")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return VMID{}, fmt.Errorf("microvmstore: %q is not namespace/name/uid", s)
	}
	return VMID{Namespace: parts[0], Name: parts[1], UID: parts[2]}, nil
}

// MicroVM is a microVM record, shaped like Flintlock's: a version, the
// spec the user asked for and the status the host reached.
type MicroVM struct {
	ID      VMID          `json:"id"`
	Version int           `json:"version"`
	Spec    MicroVMSpec   `json:"spec"`
	Status  MicroVMStatus `json:"status"`
}

// MicroVMSpec is what the microVM should be.
type MicroVMSpec struct {
	Provider          string             `json:"provider,omitempty"`
	Labels            map[string]string  `json:"labels,omitempty"`
	VCPU              int64              `json:"vcpu"`
	MemoryInMb        int64              `json:"memory_inmb"`
	Kernel            Kernel             `json:"kernel"`
	Initrd            *Initrd            `json:"initrd,omitempty"`
	RootVolume        Volume             `json:"root_volume"`
	AdditionalVolumes []Volume           `json:"additional_volumes,omitempty"`
	NetworkInterfaces []NetworkInterface `json:"network_interfaces,omitempty"`
	// Metadata is base64-encoded (cloud-init user data: secrets).
	Metadata   map[string]string `json:"metadata,omitempty"`
	GuestAgent bool              `json:"guest_agent,omitempty"`
	CreatedAt  int64             `json:"created_at"`
	UpdatedAt  int64             `json:"updated_at"`
	DeletedAt  int64             `json:"deleted_at"`
}

// Kernel is the kernel to boot.
type Kernel struct {
	Image            string            `json:"image"`
	Filename         string            `json:"filename,omitempty"`
	CmdLine          map[string]string `json:"cmdline,omitempty"`
	AddNetworkConfig bool              `json:"add_network_config"`
}

// Initrd is an initial ramdisk.
type Initrd struct {
	Image    string `json:"image"`
	Filename string `json:"filename,omitempty"`
}

// Volume is a disk.
type Volume struct {
	ID         string `json:"id"`
	MountPoint string `json:"mount_point,omitempty"`
	IsReadOnly bool   `json:"is_read_only"`
	Source     string `json:"source"`
	Size       int32  `json:"size,omitempty"`
}

// NetworkInterface is a guest NIC.
type NetworkInterface struct {
	GuestDeviceName string `json:"guest_device_name"`
	Type            string `json:"type"`
	GuestMAC        string `json:"guest_mac,omitempty"`
	Address         string `json:"address,omitempty"`
}

// MicroVMState is where the host is with a microVM.
type MicroVMState string

// The states.
const (
	PendingState  MicroVMState = "pending"
	CreatedState  MicroVMState = "created"
	FailedState   MicroVMState = "failed"
	DeletingState MicroVMState = "deleting"
)

// MicroVMStatus is what the host reached.
type MicroVMStatus struct {
	State             MicroVMState                      `json:"state"`
	Volumes           map[string]VolumeStatus           `json:"volumes,omitempty"`
	NetworkInterfaces map[string]NetworkInterfaceStatus `json:"network_interfaces,omitempty"`
	Retry             int                               `json:"retry"`
	VsockPath         string                            `json:"vsock_path,omitempty"`
}

// VolumeStatus is a mounted volume.
type VolumeStatus struct {
	Mount string `json:"mount"`
}

// NetworkInterfaceStatus is a host-side interface.
type NetworkInterfaceStatus struct {
	HostDeviceName string `json:"host_device_name"`
	Index          int    `json:"index"`
	MACAddress     string `json:"mac_address"`
}

// RepositoryGetOptions selects one record: by namespace and name (the
// newest uid under them) or by uid too; Version picks an older version
// ("" or "0": the latest).
type RepositoryGetOptions struct {
	Name      string
	Namespace string
	Version   string
	UID       string
}

// ListMicroVMQuery is a label-style filter: "namespace" and "name".
type ListMicroVMQuery map[string]string
