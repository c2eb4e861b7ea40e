terraform {
  # 1.9+: variable validations may reference other variables and the plan output is stable.
  required_version = ">= 1.9.0, < 2.0.0"

  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = "~> 4.14"
    }
  }
}

# Credentials never live in this configuration: `az login` locally, OIDC (ARM_USE_OIDC=true,
# ARM_CLIENT_ID, ARM_TENANT_ID, ARM_SUBSCRIPTION_ID) in GitHub Actions. See docs/deploy-azure.md.
provider "azurerm" {
  features {
    resource_group {
      # `terraform destroy` refuses to delete a group that still holds resources it did not create.
      prevent_deletion_if_contains_resources = true
    }
    virtual_machine {
      delete_os_disk_on_deletion = true
    }
  }
}
