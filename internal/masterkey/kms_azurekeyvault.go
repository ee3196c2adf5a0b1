//go:build kms_azure || kms_all

package masterkey

// Links the azurekeyvault:// KMS driver (build with -tags kms_azure or kms_all).
import _ "gocloud.dev/secrets/azurekeyvault"
