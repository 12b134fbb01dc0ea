# Worker network: a security group with no ingress at all and egress only to
# HTTPS (AWS APIs: DynamoDB, KMS, CloudWatch, EC2) and PostgreSQL.
# DNS (the VPC resolver), the instance metadata service and Amazon Time Sync
# are link-local/VPC services that security groups do not filter.

data "aws_vpc" "default" {
  count   = var.worker_security_group_id == "" && var.vpc_id == "" && var.worker_subnet_id == "" ? 1 : 0
  default = true
}

data "aws_subnet" "worker" {
  count = var.worker_subnet_id != "" ? 1 : 0
  id    = var.worker_subnet_id
}

locals {
  # The group must live in the workers' VPC: an explicit vpc_id, else the
  # VPC of worker_subnet_id, else the default VPC.
  worker_vpc_id = (
    var.vpc_id != "" ? var.vpc_id :
    var.worker_subnet_id != "" ? data.aws_subnet.worker[0].vpc_id :
    var.worker_security_group_id == "" ? data.aws_vpc.default[0].id : ""
  )
  worker_egress_ports = distinct(concat([443], var.worker_postgres_ports))
}

resource "aws_security_group" "worker" {
  count = var.worker_security_group_id == "" ? 1 : 0

  name        = "${local.name}-worker"
  description = "Replication workers: no ingress; egress HTTPS and PostgreSQL only"
  vpc_id      = local.worker_vpc_id

  dynamic "egress" {
    for_each = local.worker_egress_ports
    content {
      description      = egress.value == 443 ? "HTTPS (AWS APIs)" : "PostgreSQL"
      protocol         = "tcp"
      from_port        = egress.value
      to_port          = egress.value
      cidr_blocks      = var.worker_egress_cidr_blocks
      ipv6_cidr_blocks = var.worker_egress_ipv6_cidr_blocks
    }
  }

  tags = {
    Name = "${local.name}-worker"
  }
}
