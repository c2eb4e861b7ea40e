# ---------------------------------------------------------------------------------------------------
# Where and what
# ---------------------------------------------------------------------------------------------------

variable "name_prefix" {
  description = "Prefix of every resource name (lowercase letters, digits and hyphens; 3-20 characters)."
  type        = string
  default     = "sentiment"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,18}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 3-20 characters: lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "location" {
  description = "Azure region, e.g. westeurope, northeurope, eastus (`az account list-locations -o table`)."
  type        = string
  default     = "westeurope"

  validation {
    condition     = can(regex("^[a-z]+[a-z0-9]*$", var.location))
    error_message = "location must be an Azure region name such as westeurope (lowercase, no spaces)."
  }
}

variable "tags" {
  description = "Tags added to every resource (cost tracking, ownership)."
  type        = map(string)
  default = {
    project    = "sentiment-pipeline"
    managed-by = "terraform"
  }
}

# ---------------------------------------------------------------------------------------------------
# Network access: nothing is open to the internet. Only these CIDRs reach SSH, the Kubernetes API and
# the HTTP(S) ingress. There is deliberately no default.
# ---------------------------------------------------------------------------------------------------

variable "admin_cidrs" {
  description = "CIDRs allowed to reach SSH (22), the Kubernetes API (6443) and HTTP(S) (80/443), e.g. [\"203.0.113.7/32\"]. No default: you must name them. Open ranges (0.0.0.0/0, ::/0) and prefixes shorter than /8 are refused."
  type        = list(string)
  nullable    = false

  validation {
    condition     = length(var.admin_cidrs) > 0
    error_message = "admin_cidrs must name at least one CIDR (your public IP: curl -s https://ifconfig.me, then append /32)."
  }

  validation {
    condition     = alltrue([for cidr in var.admin_cidrs : can(cidrhost(cidr, 0))])
    error_message = "Every admin_cidrs entry must be an IPv4 or IPv6 CIDR such as 203.0.113.7/32 (not \"*\", \"Internet\" or a bare address)."
  }

  validation {
    condition = alltrue([
      for cidr in var.admin_cidrs :
      can(cidrhost(cidr, 0)) && tonumber(split("/", cidr)[1]) >= 8
    ])
    error_message = "admin_cidrs must not contain open ranges: 0.0.0.0/0, ::/0 and any prefix shorter than /8 are refused."
  }
}

variable "vnet_cidr" {
  description = "Address space of the virtual network."
  type        = string
  default     = "10.10.0.0/16"

  validation {
    condition     = can(cidrhost(var.vnet_cidr, 0))
    error_message = "vnet_cidr must be a CIDR such as 10.10.0.0/16."
  }
}

variable "subnet_cidr" {
  description = "Address prefix of the VM's subnet, inside vnet_cidr. Must stay clear of the k3s pod (10.42.0.0/16) and service (10.43.0.0/16) ranges."
  type        = string
  default     = "10.10.1.0/24"

  validation {
    condition     = can(cidrhost(var.subnet_cidr, 0)) && !startswith(var.subnet_cidr, "10.42.") && !startswith(var.subnet_cidr, "10.43.")
    error_message = "subnet_cidr must be a CIDR such as 10.10.1.0/24, outside k3s' 10.42.0.0/16 and 10.43.0.0/16."
  }
}

# ---------------------------------------------------------------------------------------------------
# The VM
# ---------------------------------------------------------------------------------------------------

variable "vm_size" {
  description = "VM size. Standard_D4as_v5 (4 vCPU, 16 GiB) runs the whole stack (Kafka, MongoDB, MySQL, Metabase, operator, 1 consumer + 1 inference worker) with room to spare; Standard_B4ms is cheaper but burstable. See docs/deploy-azure.md for costs."
  type        = string
  default     = "Standard_D4as_v5"

  validation {
    condition     = can(regex("^Standard_[A-Za-z0-9_]+$", var.vm_size))
    error_message = "vm_size must be an Azure VM size name such as Standard_D4as_v5."
  }
}

variable "admin_username" {
  description = "Login of the VM's administrator (SSH key only; password authentication is disabled)."
  type        = string
  default     = "azureuser"

  validation {
    condition     = can(regex("^[a-z_][a-z0-9_-]{0,31}$", var.admin_username)) && !contains(["root", "admin", "administrator", "azure"], var.admin_username)
    error_message = "admin_username must be a lowercase Linux user name and not one Azure reserves (root, admin, administrator, azure)."
  }
}

variable "ssh_public_key" {
  description = "OpenSSH public key of the administrator (contents of ~/.ssh/id_ed25519.pub or an RSA key of at least 2048 bits). The only way in: no password is ever set."
  type        = string

  validation {
    condition     = can(regex("^(ssh-rsa|ssh-ed25519) [A-Za-z0-9+/=]+( .*)?$", trimspace(var.ssh_public_key)))
    error_message = "ssh_public_key must be an OpenSSH public key line starting with ssh-ed25519 or ssh-rsa."
  }
}

variable "os_disk_size_gb" {
  description = "OS disk size in GiB (container images, k3s local-path volumes for Kafka/MongoDB/MySQL/Metabase)."
  type        = number
  default     = 64

  validation {
    condition     = var.os_disk_size_gb >= 32 && var.os_disk_size_gb <= 1024
    error_message = "os_disk_size_gb must be between 32 and 1024."
  }
}

variable "os_disk_type" {
  description = "Managed disk type of the OS disk."
  type        = string
  default     = "StandardSSD_LRS"

  validation {
    condition     = contains(["Standard_LRS", "StandardSSD_LRS", "Premium_LRS", "StandardSSD_ZRS", "Premium_ZRS"], var.os_disk_type)
    error_message = "os_disk_type must be one of Standard_LRS, StandardSSD_LRS, Premium_LRS, StandardSSD_ZRS, Premium_ZRS."
  }
}

variable "encryption_at_host" {
  description = "Encrypt the VM's temp disk and disk caches at the host. Needs the subscription feature once: az feature register --namespace Microsoft.Compute --name EncryptionAtHost."
  type        = bool
  default     = true
}

# ---------------------------------------------------------------------------------------------------
# Software: pinned and checksum-verified
# ---------------------------------------------------------------------------------------------------

variable "k3s_version" {
  description = "k3s release installed on the VM (a GitHub release tag of k3s-io/k3s). Change it together with k3s_sha256."
  type        = string
  default     = "v1.36.5+k3s1"

  validation {
    condition     = can(regex("^v[0-9]+\\.[0-9]+\\.[0-9]+\\+k3s[0-9]+$", var.k3s_version))
    error_message = "k3s_version must be an exact release tag such as v1.36.5+k3s1 (no channels, no 'latest')."
  }
}

variable "k3s_sha256" {
  description = "SHA-256 of the k3s amd64 binary of k3s_version (line `k3s` of the release's sha256sum-amd64.txt). The VM refuses a binary that does not match."
  type        = string
  default     = "d73847bcd3c5fccef0115b372e2f9a91f3032dc84bbf71518a4617565294d313"

  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.k3s_sha256))
    error_message = "k3s_sha256 must be 64 lowercase hex characters."
  }
}

variable "helm_version" {
  description = "Helm release installed on the VM. Change it together with helm_sha256."
  type        = string
  default     = "v3.17.2"

  validation {
    condition     = can(regex("^v3\\.[0-9]+\\.[0-9]+$", var.helm_version))
    error_message = "helm_version must be an exact Helm 3 release such as v3.17.2."
  }
}

variable "helm_sha256" {
  description = "SHA-256 of helm-<helm_version>-linux-amd64.tar.gz (the release's .sha256sum file)."
  type        = string
  default     = "90c28792a1eb5fb0b50028e39ebf826531ebfcf73f599050dbd79bab2f277241"

  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.helm_sha256))
    error_message = "helm_sha256 must be 64 lowercase hex characters."
  }
}

# ---------------------------------------------------------------------------------------------------
# The project's chart
# ---------------------------------------------------------------------------------------------------

variable "chart_repository" {
  description = "OCI repository the chart is published to by .github/workflows/release.yml."
  type        = string
  default     = "oci://ghcr.io/sentiment-pipeline/charts"

  validation {
    condition     = can(regex("^oci://[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)+$", var.chart_repository))
    error_message = "chart_repository must be an oci:// reference such as oci://ghcr.io/sentiment-pipeline/charts."
  }
}

variable "chart_version" {
  description = "Exact chart version to install (a released tag; the image tags default to its appVersion)."
  type        = string
  default     = "0.1.0"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+(-[0-9A-Za-z.-]+)?$", var.chart_version))
    error_message = "chart_version must be an exact SemVer version such as 0.1.0."
  }
}

variable "chart_namespace" {
  description = "Namespace the chart is installed into."
  type        = string
  default     = "sentiment"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", var.chart_namespace)) && length(var.chart_namespace) <= 63
    error_message = "chart_namespace must be a DNS-1123 label."
  }
}

variable "expose_metabase" {
  description = "Publish Metabase through the k3s Traefik ingress at http://metabase.<public-ip>.sslip.io (reachable only from admin_cidrs). When false, reach it with an SSH tunnel and kubectl port-forward."
  type        = bool
  default     = false
}

variable "chart_values" {
  description = "Extra Helm values (YAML) for the chart, merged last, e.g. worker replicas or resources. Never put credentials here: the chart generates its own or reads existing Secrets."
  type        = string
  default     = ""

  validation {
    condition     = var.chart_values == "" || can(yamldecode(var.chart_values))
    error_message = "chart_values must be valid YAML."
  }
}
