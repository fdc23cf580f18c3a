# home：本区域页面的文字。各语言的键相同。
home-welcome = 欢迎，{ $name }
home-department = 部门
home-roles = 角色
