//go:build kms_gcp || kms_all

package masterkey

// Links the gcpkms:// KMS driver (build with -tags kms_gcp or kms_all).
import _ "gocloud.dev/secrets/gcpkms"
