//go:build kms_aws || kms_all

package masterkey

// Links the awskms:// KMS driver (build with -tags kms_aws or kms_all).
import _ "gocloud.dev/secrets/awskms"
