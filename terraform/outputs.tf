output "public_ip" {
  description = "Public IP address of the VM (reachable only from admin_cidrs)."
  value       = azurerm_public_ip.vm.ip_address
}

output "ssh_command" {
  description = "SSH into the VM (key authentication only)."
  value       = "ssh ${var.admin_username}@${azurerm_public_ip.vm.ip_address}"
}

output "provisioning_status_command" {
  description = "Wait for cloud-init (k3s, Helm, the chart) to finish and show its result."
  value       = "ssh ${var.admin_username}@${azurerm_public_ip.vm.ip_address} 'cloud-init status --wait --long; cat /var/lib/sentiment/installed'"
}

output "kubeconfig_command" {
  description = "Write a kubeconfig for the cluster to ./kubeconfig-sentiment.yaml (mode 0600); then export KUBECONFIG=$PWD/kubeconfig-sentiment.yaml. The API answers only from admin_cidrs."
  value       = "(umask 077; ssh ${var.admin_username}@${azurerm_public_ip.vm.ip_address} 'cat ~/.kube/config' | sed 's#https://127.0.0.1:6443#https://${azurerm_public_ip.vm.ip_address}:6443#' > kubeconfig-sentiment.yaml)"
}

output "metabase_url" {
  description = "Where Metabase answers: the sslip.io ingress host when expose_metabase is true, otherwise the local end of `kubectl port-forward` (see docs/deploy-azure.md)."
  value       = var.expose_metabase ? "http://${local.metabase_host}" : "http://127.0.0.1:3000 (after: kubectl -n ${var.chart_namespace} port-forward svc/sentiment-pipeline-metabase 3000:3000)"
}

output "vm_identity_principal_id" {
  description = "Object id of the VM's system-assigned managed identity (grant it roles explicitly, e.g. AcrPull, Key Vault Secrets User)."
  value       = azurerm_linux_virtual_machine.vm.identity[0].principal_id
}

output "resource_group_name" {
  description = "Resource group holding everything; deleting it removes all of it (see teardown in docs/deploy-azure.md)."
  value       = azurerm_resource_group.main.name
}
