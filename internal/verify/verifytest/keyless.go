package verifytest

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"google.golang.org/protobuf/encoding/protojson"
)

// Keyless signatures and attestations from a sigstore-go VirtualSigstore
// (cosign cannot sign keyless offline), written in cosign's layouts.

// cosign's names, as the registry holds them.
const (
	bundleMediaType       = "application/vnd.dev.sigstore.bundle.v0.3+json"
	emptyConfigType       = "application/vnd.oci.empty.v1+json"
	dsseMediaType         = "application/vnd.dsse.envelope.v1+json"
	annotationSignature   = "dev.cosignproject.cosign/signature"
	annotationCertificate = "dev.sigstore.cosign/certificate"
	annotationBundle      = "dev.sigstore.cosign/bundle"
)

// SimpleSigningPayload is what cosign signs for an image.
func SimpleSigningPayload(d name.Digest) []byte {
	return []byte(fmt.Sprintf(`{"critical":{"identity":{"docker-reference":%q},"image":{"docker-manifest-digest":%q},"type":"cosign container image signature"},"optional":null}`,
		d.Context().Name(), d.DigestStr()))
}

// Statement is an in-toto statement of type statementType about d.
func Statement(t testing.TB, d name.Digest, statementType, predicateType string, predicate any) []byte {
	t.Helper()
	raw, err := json.Marshal(map[string]any{
		"_type":         statementType,
		"subject":       []any{map[string]any{"name": d.Context().Name(), "digest": map[string]string{"sha256": strings.TrimPrefix(d.DigestStr(), "sha256:")}}},
		"predicateType": predicateType,
		"predicate":     predicate,
	})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// SignKeylessLegacy signs d with a VirtualSigstore certificate for
// (subject, issuer) and writes the signature the way cosign lays out a
// keyless legacy signature: payload layer, certificate, chain and Rekor bundle.
// opts give the registry's credentials when it needs them.
func SignKeylessLegacy(t testing.TB, vs *ca.VirtualSigstore, d name.Digest, subject, issuer string, opts ...remote.Option) {
	t.Helper()
	SignKeylessLegacyWith(t, vs, d, subject, issuer, Evidence{Log: vs}, opts...)
}

// SignKeylessLegacyWith is SignKeylessLegacy with the Rekor entry and the
// timestamp that ev asks for: the entry of vs's signature, its inclusion
// promise signed by ev.Log; the timestamp by ev.TSA.
func SignKeylessLegacyWith(t testing.TB, vs *ca.VirtualSigstore, d name.Digest, subject, issuer string, ev Evidence, opts ...remote.Option) {
	t.Helper()
	payload := SimpleSigningPayload(d)
	e, err := vs.Sign(subject, issuer, payload)
	if err != nil {
		t.Fatal(err)
	}
	vc, _ := e.VerificationContent()
	sc, _ := e.SignatureContent()
	entries, _ := e.TlogEntries()
	certPEM, err := cryptoutils.MarshalCertificateToPEM(vc.Certificate())
	if err != nil {
		t.Fatal(err)
	}
	ann := map[string]string{
		annotationSignature:   base64.StdEncoding.EncodeToString(sc.Signature()),
		annotationCertificate: string(certPEM),
	}
	tle := entries[0].TransparencyLogEntry()
	ev.annotate(t, ann, tle.CanonicalizedBody, tle.IntegratedTime, tle.LogIndex, sc.Signature())
	WriteLegacySignature(t, d, payload, ann, opts...)
}

// InclusionPromise is the Rekor payload of a log entry and the VirtualSigstore's
// signed entry timestamp over it.
func InclusionPromise(t testing.TB, vs *ca.VirtualSigstore, tle *protorekor.TransparencyLogEntry) (tlog.RekorPayload, []byte) {
	t.Helper()
	rp := tlog.RekorPayload{Body: base64.StdEncoding.EncodeToString(tle.CanonicalizedBody), IntegratedTime: tle.IntegratedTime,
		LogIndex: tle.LogIndex, LogID: hex.EncodeToString(tle.LogId.KeyId)}
	set, err := vs.RekorSignPayload(rp)
	if err != nil {
		t.Fatal(err)
	}
	return rp, set
}

// AttestKeylessBundle attests d with a VirtualSigstore certificate, the way
// cosign v3 signs and attests: a DSSE envelope of an in-toto statement in a
// v0.3 bundle, attached as a referrer. A statement of type
// https://sigstore.dev/cosign/sign/v1 is a signature, any other an attestation.
func AttestKeylessBundle(t testing.TB, vs *ca.VirtualSigstore, d name.Digest, subject, issuer, predicateType string, predicate any) {
	t.Helper()
	statement := Statement(t, d, "https://in-toto.io/Statement/v1", predicateType, predicate)
	e, err := vs.AttestAtTime(subject, issuer, statement, time.Now().Add(5*time.Minute), true)
	if err != nil {
		t.Fatal(err)
	}
	vc, _ := e.VerificationContent()
	sc, _ := e.SignatureContent()
	entries, _ := e.TlogEntries()
	tss, _ := e.Timestamps()
	env := sc.EnvelopeContent().RawEnvelope()
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := base64.StdEncoding.DecodeString(env.Signatures[0].Sig)
	tle := entries[0].TransparencyLogEntry()
	_, set := InclusionPromise(t, vs, tle)
	tle.KindVersion = &protorekor.KindVersion{Kind: "dsse", Version: "0.0.1"}
	tle.InclusionPromise = &protorekor.InclusionPromise{SignedEntryTimestamp: set}
	var ts []*protocommon.RFC3161SignedTimestamp
	for _, t := range tss {
		ts = append(ts, &protocommon.RFC3161SignedTimestamp{SignedTimestamp: t})
	}
	pb := &protobundle.Bundle{
		MediaType: bundleMediaType,
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content:                   &protobundle.VerificationMaterial_Certificate{Certificate: &protocommon.X509Certificate{RawBytes: vc.Certificate().Raw}},
			TlogEntries:               []*protorekor.TransparencyLogEntry{tle},
			TimestampVerificationData: &protobundle.TimestampVerificationData{Rfc3161Timestamps: ts},
		},
		Content: &protobundle.Bundle_DsseEnvelope{DsseEnvelope: &protodsse.Envelope{
			Payload: payload, PayloadType: env.PayloadType, Signatures: []*protodsse.Signature{{Sig: sig}},
		}},
	}
	raw, err := protojson.Marshal(pb)
	if err != nil {
		t.Fatal(err)
	}
	AttachBundle(t, d, d.Context(), raw)
}

// AttachBundle pushes a bundle as an OCI 1.1 referrer of d into repo, as
// cosign does: an empty config, one bundle layer, artifactType and subject.
func AttachBundle(t testing.TB, d name.Digest, repo name.Repository, bundleJSON []byte, opts ...remote.Option) {
	t.Helper()
	subject, err := remote.Head(d, opts...)
	if err != nil {
		t.Fatal(err)
	}
	cfg := static.NewLayer([]byte("{}"), emptyConfigType)
	layer := static.NewLayer(bundleJSON, bundleMediaType)
	for _, l := range []v1.Layer{cfg, layer} {
		if err := remote.WriteLayer(repo, l, opts...); err != nil {
			t.Fatal(err)
		}
	}
	desc := func(l v1.Layer) map[string]any {
		dg, _ := l.Digest()
		sz, _ := l.Size()
		mt, _ := l.MediaType()
		return map[string]any{"mediaType": mt, "digest": dg.String(), "size": sz}
	}
	m, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": types.OCIManifestSchema1, "artifactType": bundleMediaType,
		"config": desc(cfg), "layers": []any{desc(layer)},
		"subject": map[string]any{"mediaType": subject.MediaType, "digest": subject.Digest.String(), "size": subject.Size},
	})
	sum := sha256.Sum256(m)
	if err := remote.Put(repo.Digest("sha256:"+hex.EncodeToString(sum[:])), rawManifest(m), opts...); err != nil {
		t.Fatal(err)
	}
}

type rawManifest []byte

func (m rawManifest) RawManifest() ([]byte, error)        { return m, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

// AttestKeylessLegacy attests d with a VirtualSigstore certificate in
// cosign's legacy layout: a .att layer holding the DSSE envelope, with the
// certificate and the Rekor bundle in annotations.
func AttestKeylessLegacy(t testing.TB, vs *ca.VirtualSigstore, d name.Digest, subject, issuer, predicateType string, predicate any) {
	t.Helper()
	AttestKeylessLegacyWith(t, vs, d, subject, issuer, predicateType, predicate, Evidence{Log: vs})
}

// AttestKeylessLegacyWith is AttestKeylessLegacy with the Rekor entry and
// the timestamp that ev asks for; cosign timestamps a .att layer's whole
// payload, the envelope.
func AttestKeylessLegacyWith(t testing.TB, vs *ca.VirtualSigstore, d name.Digest, subject, issuer, predicateType string, predicate any, ev Evidence) {
	t.Helper()
	statement := Statement(t, d, "https://in-toto.io/Statement/v0.1", predicateType, predicate)
	e, err := vs.Attest(subject, issuer, statement)
	if err != nil {
		t.Fatal(err)
	}
	vc, _ := e.VerificationContent()
	sc, _ := e.SignatureContent()
	entries, _ := e.TlogEntries()
	envelope, err := json.Marshal(sc.EnvelopeContent().RawEnvelope())
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := cryptoutils.MarshalCertificateToPEM(vc.Certificate())
	if err != nil {
		t.Fatal(err)
	}
	ann := map[string]string{annotationSignature: "", "predicateType": predicateType, annotationCertificate: string(certPEM)}
	tle := entries[0].TransparencyLogEntry()
	ev.annotate(t, ann, tle.CanonicalizedBody, tle.IntegratedTime, tle.LogIndex, envelope)
	img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1), mutate.Addendum{
		Layer:       static.NewLayer(envelope, dsseMediaType),
		Annotations: ann,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(d.Context().Tag(strings.Replace(d.DigestStr(), ":", "-", 1)+".att"), img); err != nil {
		t.Fatal(err)
	}
}
