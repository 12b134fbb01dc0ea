package ec2launcher

// Size bands and instance types from the guide's cost table.
const (
	gb = int64(1_000_000_000)
	tb = 1000 * gb
)

// Band is a size band of the guide's table, used as the InstanceSize
// metric dimension.
type Band struct {
	Name         string // small, medium, large, xlarge, unknown
	InstanceType string
}

// DefaultUnknownSizeType is used when the job gives no estimated size:
// the guide's default worker_instance_type.
const DefaultUnknownSizeType = "c5.2xlarge"

// SizeBand maps an estimated database size to the guide's instance type:
//
//	< 10 GB         t3.medium
//	10 GB – 100 GB  c5.large
//	100 GB – 1 TB   c5.2xlarge
//	> 1 TB          c5.4xlarge
//
// (GB = 10^9 bytes; each lower bound belongs to the larger band, 1 TB
// itself to c5.2xlarge.) A size of 0 or less means unknown.
func SizeBand(estimatedBytes int64) Band {
	switch {
	case estimatedBytes <= 0:
		return Band{Name: "unknown", InstanceType: DefaultUnknownSizeType}
	case estimatedBytes < 10*gb:
		return Band{Name: "small", InstanceType: "t3.medium"}
	case estimatedBytes < 100*gb:
		return Band{Name: "medium", InstanceType: "c5.large"}
	case estimatedBytes <= tb:
		return Band{Name: "large", InstanceType: "c5.2xlarge"}
	default:
		return Band{Name: "xlarge", InstanceType: "c5.4xlarge"}
	}
}

// instanceFor applies the configured overrides to SizeBand.
func (o *Options) instanceFor(estimatedBytes int64) Band {
	b := SizeBand(estimatedBytes)
	if o.InstanceType != "" {
		b.InstanceType = o.InstanceType
		return b
	}
	if t, ok := o.BandTypes[b.Name]; ok && t != "" {
		b.InstanceType = t
	}
	return b
}
