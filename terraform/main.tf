# One Ubuntu LTS VM running a single-node k3s cluster with the sentiment-pipeline chart installed.
#
#   resource group -> VNet/subnet (+ NSG: admin CIDRs only) -> public IP + NIC -> VM (SSH key only,
#   system-assigned managed identity) -> cloud-init: pinned, checksum-verified k3s and Helm, then
#   `helm upgrade --install` of the chart from its OCI registry.

locals {
  name = var.name_prefix
  tags = merge(var.tags, { component = "sentiment-pipeline" })

  # The only inbound traffic allowed, and only from var.admin_cidrs.
  admin_ports = {
    ssh            = { priority = 100, port = "22" }
    kubernetes-api = { priority = 110, port = "6443" }
    http           = { priority = 120, port = "80" }
    https          = { priority = 130, port = "443" }
  }

  metabase_host = "metabase.${azurerm_public_ip.vm.ip_address}.sslip.io"

  # Values written by cloud-init and passed to helm before var.chart_values (which wins).
  base_values = yamlencode(var.expose_metabase ? {
    metabase = {
      ingress = {
        enabled   = true
        className = "traefik"
        host      = local.metabase_host
      }
    }
  } : {})

  cloud_init = templatefile("${path.module}/cloud-init.yaml.tftpl", {
    admin_username   = var.admin_username
    public_ip        = azurerm_public_ip.vm.ip_address
    k3s_version      = var.k3s_version
    k3s_sha256       = var.k3s_sha256
    helm_version     = var.helm_version
    helm_sha256      = var.helm_sha256
    chart_repository = var.chart_repository
    chart_version    = var.chart_version
    chart_namespace  = var.chart_namespace
    base_values_b64  = base64encode(local.base_values)
    extra_values_b64 = base64encode(var.chart_values == "" ? "{}\n" : var.chart_values)
    install_sh_b64   = base64encode(file("${path.module}/files/install-sentiment.sh"))
  })
}

resource "azurerm_resource_group" "main" {
  name     = "${local.name}-rg"
  location = var.location
  tags     = local.tags
}

resource "azurerm_virtual_network" "main" {
  name                = "${local.name}-vnet"
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  address_space       = [var.vnet_cidr]
  tags                = local.tags
}

resource "azurerm_subnet" "vm" {
  name                            = "${local.name}-vm"
  resource_group_name             = azurerm_resource_group.main.name
  virtual_network_name            = azurerm_virtual_network.main.name
  address_prefixes                = [var.subnet_cidr]
  default_outbound_access_enabled = false
}

resource "azurerm_network_security_group" "vm" {
  name                = "${local.name}-nsg"
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  tags                = local.tags

  # SSH, the Kubernetes API and HTTP(S), each only from the admin CIDRs. Everything else inbound from
  # the internet hits Azure's DenyAllInBound default rule.
  dynamic "security_rule" {
    for_each = local.admin_ports
    content {
      name                       = "allow-${security_rule.key}-from-admin"
      priority                   = security_rule.value.priority
      direction                  = "Inbound"
      access                     = "Allow"
      protocol                   = "Tcp"
      source_port_range          = "*"
      destination_port_range     = security_rule.value.port
      source_address_prefixes    = var.admin_cidrs
      destination_address_prefix = "VirtualNetwork"
    }
  }
}

resource "azurerm_subnet_network_security_group_association" "vm" {
  subnet_id                 = azurerm_subnet.vm.id
  network_security_group_id = azurerm_network_security_group.vm.id
}

resource "azurerm_public_ip" "vm" {
  name                = "${local.name}-ip"
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  allocation_method   = "Static"
  sku                 = "Standard"
  tags                = local.tags
}

resource "azurerm_network_interface" "vm" {
  # checkov:skip=CKV_AZURE_119: single-node demo cluster reached directly; inbound is limited to admin_cidrs by the NSG.
  name                = "${local.name}-nic"
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  tags                = local.tags

  ip_configuration {
    name                          = "primary"
    subnet_id                     = azurerm_subnet.vm.id
    private_ip_address_allocation = "Dynamic"
    public_ip_address_id          = azurerm_public_ip.vm.id
  }
}

resource "azurerm_linux_virtual_machine" "vm" {
  name                = "${local.name}-vm"
  computer_name       = "${local.name}-k3s"
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  size                = var.vm_size
  tags                = local.tags

  network_interface_ids = [azurerm_network_interface.vm.id]

  # SSH keys only: no password is set and password login is refused.
  admin_username                  = var.admin_username
  disable_password_authentication = true
  admin_ssh_key {
    username   = var.admin_username
    public_key = trimspace(var.ssh_public_key)
  }

  # An identity for the VM itself (Key Vault, ACR pulls, ...) instead of credentials on disk. It gets no
  # role here: grant one explicitly when a workload needs it (least privilege).
  identity {
    type = "SystemAssigned"
  }

  # No VM extensions (cloud-init does the provisioning); host-level encryption; Trusted Launch.
  allow_extension_operations = false
  encryption_at_host_enabled = var.encryption_at_host
  secure_boot_enabled        = true
  vtpm_enabled               = true
  patch_mode                 = "ImageDefault"

  custom_data = base64encode(local.cloud_init)

  os_disk {
    name                 = "${local.name}-osdisk"
    caching              = "ReadWrite"
    storage_account_type = var.os_disk_type
    disk_size_gb         = var.os_disk_size_gb
  }

  source_image_reference {
    publisher = "Canonical"
    offer     = "ubuntu-24_04-lts"
    sku       = "server"
    version   = "latest"
  }

  # Serial console and screenshots for debugging a failed boot, in Azure-managed storage.
  boot_diagnostics {}

  depends_on = [azurerm_subnet_network_security_group_association.vm]

  lifecycle {
    # A new image version or edited cloud-init would otherwise replace the VM (and its data) on every
    # plan. Recreate deliberately with `terraform apply -replace=azurerm_linux_virtual_machine.vm`.
    ignore_changes = [source_image_reference[0].version, custom_data]
  }
}
