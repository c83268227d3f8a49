// Engine 2 (latent mappers): written below.
#include <styleclip/engines/mapper.h>
