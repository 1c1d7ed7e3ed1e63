package vmtest

import "testing"

func TestKernelPackage(t *testing.T) {
	for _, tt := range []struct{ out, pkg, release string }{
		{"linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-56-cloud-amd64\n", "linux-image-6.1.0-56-cloud-amd64", "6.1.0-56-cloud-amd64"},
		{"linux-image-cloud-amd64\n  Depends: linux-image-6.12.48+deb13-cloud-amd64", "linux-image-6.12.48+deb13-cloud-amd64", "6.12.48+deb13-cloud-amd64"},
		{"linux-image-cloud-amd64\n  Depends: linux-image-6.12.48+deb13-cloud-amd64-unsigned\n", "", ""},
		{"W: Unable to locate package linux-image-cloud-amd64\n", "", ""},
	} {
		pkg, release, ok := kernelPackage(tt.out)
		if pkg != tt.pkg || release != tt.release || ok != (tt.pkg != "") {
			t.Errorf("kernelPackage(%q) = %q, %q, %v; want %q, %q", tt.out, pkg, release, ok, tt.pkg, tt.release)
		}
	}
}

func TestReadHandover(t *testing.T) {
	log := "squashportage: handover: 412ms from the start of /init to the exec of /sbin/init (396ms in main)\n" +
		"squashportage: starting /sbin/init e2earg after 396ms in the initramfs (2.4s since the kernel started)\n"
	h, ok := ReadHandover(log)
	if !ok || h != (Handover{FromExec: "412ms", FromMain: "396ms", SinceKernel: "2.4s"}) {
		t.Errorf("ReadHandover = %+v, %v", h, ok)
	}
	log = "squashportage: handover: 262ms from the start of /init to the exec of /sbin/init (258ms in main: 241ms loading 9 modules, 1ms waiting for the root device, 16ms of our own)\n" +
		"squashportage: starting /sbin/init after 258ms in the initramfs (2.085s since the kernel started)\n"
	h, ok = ReadHandover(log)
	want := Handover{FromExec: "262ms", FromMain: "258ms", SinceKernel: "2.085s", Loading: "241ms", Modules: "9", RootDevice: "1ms", Own: "16ms"}
	if !ok || h != want {
		t.Errorf("ReadHandover = %+v, %v; want %+v", h, ok, want)
	}
	if _, ok := ReadHandover("nothing"); ok {
		t.Error("no lines: ok")
	}
}
